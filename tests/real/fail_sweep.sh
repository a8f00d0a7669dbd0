# tests/real/fail_sweep.sh: fault-point sweeps of real programs under
# libmm_malloc.so, sourced by tests/real/run-quick (make test-real-quick
# and, wider, make test-real). MM_MALLOC_FAIL=K,10000,1 fails the K-th
# eligible allocation of the process and no other; one run a K. Each run
# must end either as the program ends with glibc's malloc (status 0, the
# same stdout) or with the program's own out-of-memory report and the
# status that comes with it: never another status or signal, a report of
# our heap's checker ("mm_malloc: ..."), or a hang (timeout, only to turn
# one into a failure). The C test fail_injection proves the entry points
# return NULL and ENOMEM; this proves the rest of a failed call's
# contract in programs that check it (errno read by strerror, realloc's
# block kept, what an error path frees, stdio and libc's own buffers) at
# thousands of points no one chose.
#
# Programs: single-threaded (sort --parallel=1), so the K-th call is the
# same call every run (fs_sweep checks one K twice); inputs small enough
# that the heap never reaches the background threads' start. Their calls
# (gdb: mm_malloc_sh.fail.calls at exit; Debian 12): sort 223, sqlite3
# 2363, git 464, python3 1736 (about 900 of them its start). A sweep
# that meets no out-of-memory report at all did not reach the program
# (a range past its calls) and fails.
#
# Left out: the crashes met while exploring, each of them the program's
# own: it recurs under glibc's own malloc with a shim that fails the
# K-th malloc, calloc or realloc (at the same K, or a few calls off
# where glibc's malloc is called a few more times):
#  - sqlite3's home-directory lookup (getpwuid, unless -init names a
#    file): glibc 2.36's NSS dereferences the NULL of its failed state
#    allocation (K=5, both: SIGSEGV in nss_database_check_reload_and_get,
#    local=0x0) or asserts on getline's failure (K=7, both:
#    "nss_database.c:291: nss_database_reload_1: Assertion `ret > 0'
#    failed"); so -init.
#  - Python 3.11's start: PyThreadState_New uses new_threadstate's NULL
#    (K=90, both: SIGSEGV); so python3 is swept from its script's calls.
#  - Python's heapq, imported by Counter.most_common: a module's exec
#    slot (PyModule_ExecDef's callee) drops a reference to a NULL
#    (subq $1,(%rbx) with rbx 0; ours K=1763..1765, the shim's
#    1795..1797, the same instruction); so the script sorts instead.
#  - Perl, not swept: almost anywhere. Its start (K=2..14, both: "Out of
#    memory!", then SIGSEGV in the exit of a half-built interpreter),
#    PerlIO's set-up (ours K=449..451, the shim's 451..453: SIGSEGV with
#    PerlIOBuf_open calling itself; ours K=454, the shim's 456: a hang,
#    PerlIOUnix_refcnt_dec croaking with PL_perlio_mutex held, whose
#    write to stderr takes it again) and its script (ours K=1165, 1192,
#    1207..1213, 1649, the shim's 1174, 1200..1202: SIGSEGV in
#    Perl_Slab_Alloc or Perl_sv_clear; "panic: pad_swipe curpad").

# The program a sweep needs.
fs_needs() {
	case $1 in
	sort) echo sort ;;
	sqlite) echo sqlite3 ;;
	python) echo /usr/bin/python3 ;;
	git) echo git ;;
	esac
}

# fs_setup NAME: writes NAME's input into the current directory and
# sets its command (fs_argv), stdin (fs_in), the swept range [fs_lo,
# fs_hi], its out-of-memory report (fs_oom, an ERE on stderr) and the
# statuses that may come with it (fs_codes). fs_wrap runs before env.
fs_setup() {
	fs_in=/dev/null fs_wrap=()
	case $1 in
	sort)
		seq 1 2000 | awk '{ print ($1 * 7919) % 1000, "w" ($1 % 97) }' \
			>in.txt
		fs_argv=(sort --parallel=1 '-k2,2' '-k1,1n' in.txt)
		fs_lo=1 fs_hi=230 fs_codes="2"
		# A failed fopen (its FILE) reports errno: "open failed:
		# in.txt: Cannot allocate memory".
		fs_oom='^sort: (memory exhausted|.*Cannot allocate memory)$'
		;;
	sqlite)
		cat >in.sql <<'EOF'
create table a(id integer primary key, k int, s text);
with recursive c(x) as (select 1 union all select x + 1 from c where x < 300)
insert into a select x, (x * 7919) % 100, printf('%08d-%s', x, hex(x * x)) from c;
create index ak on a(k);
select count(*), sum(length(s)) from a;
select k, count(*) from a group by k order by 2 desc, 1 limit 3;
EOF
		fs_argv=(sqlite3 -init /dev/null :memory:) fs_in=in.sql
		fs_lo=1 fs_hi=2380 fs_codes="1"
		fs_oom='out of memory'
		;;
	python)
		cat >in.py <<'EOF'
import sys, json, collections
n = 300
d = {str(i): [i, str(i) * (i % 7), (i, i + 1)] for i in range(n)}
s = json.dumps(d, sort_keys=True)
back = json.loads(s)
words = sorted(("w%d" % (i * 7919 % n)) * (1 + i % 5) for i in range(n))
cnt = collections.Counter(w[:3] for w in words)
print(len(s), len(back), words[n // 2], sorted(cnt.items())[:2])
EOF
		fs_argv=(/usr/bin/python3 -S -) fs_in=in.py
		export PYTHONHASHSEED=0
		# The K-th call moves with the address-space layout (obmalloc's
		# arena map?): the same K met the _heapq crash (below) in one
		# run of three. Without randomization it repeats.
		setarch -R true 2>/dev/null && fs_wrap=(setarch -R)
		fs_lo=903 fs_hi=1750 fs_codes="1"
		# MemoryError; a lock's "RuntimeError: can't allocate read
		# lock"; errno in "OSError: [Errno 12] Cannot allocate memory";
		# and Python's word for a C function that failed without
		# setting an exception, "SystemError: error return without
		# exception set": its own bug, which glibc's malloc meets too
		# (ours K=1358, the shim's K=1379: the same eval in
		# collections.namedtuple).
		fs_oom="MemoryError|[Mm]emory allocation failed|can't allocate .*lock|Cannot allocate memory|^SystemError: error return without exception set"
		;;
	git)
		export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.org \
			GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.org \
			GIT_AUTHOR_DATE="2020-01-01T00:00:00Z" \
			GIT_COMMITTER_DATE="2020-01-01T00:00:00Z" \
			GIT_CONFIG_NOSYSTEM=1 HOME=$PWD
		git init -q -b main repo || return 1
		for i in 1 2 3; do seq "$i" 50 >"repo/f$i"; done
		git -C repo add . && git -C repo commit -qm one || return 1
		echo 51 >>repo/f2 && git -C repo commit -qam two || return 1
		fs_argv=(git -C repo log --stat --format='%H %s')
		fs_lo=1 fs_hi=470 fs_codes="128"
		# die()'s "fatal: Out of memory, malloc failed (tried to
		# allocate N bytes)", zlib's "inflate: out of memory", a
		# config file's fopen: "Cannot allocate memory".
		fs_oom='[Oo]ut of memory|Cannot allocate memory'
		;;
	esac
}

# fs_run K OUT: the program with its K-th allocation failing (K=0: on
# glibc's malloc), in the current directory; stdout to OUT.out, stderr
# to OUT.err; returns its status (timeout's 124 if it hung). env sets
# the variables for the program only: timeout and env run unarmed.
fs_run() {
	local vars=()
	[ "$1" -gt 0 ] && vars=(LD_PRELOAD="$fs_so" MM_MALLOC_FAIL="$1,10000,1")
	timeout -k 5 "$fs_limit" "${fs_wrap[@]}" env "${vars[@]}" "${fs_argv[@]}" \
		<"$fs_in" >"$2.out" 2>"$2.err"
}

# fs_judge K ST OUT: judges run K (status ST, output OUT.*): sets
# fs_class to same (as with glibc) or oom (its report), and fs_why to
# why it ended as it may not (empty if it ended as it may).
fs_judge() {
	local k=$1 st=$2 out=$3 c
	fs_class=oom fs_why=
	if grep -q '^mm_malloc:' "$out.err"; then
		fs_why="a report of our heap: $(grep -m1 '^mm_malloc:' "$out.err")"
	elif [ "$st" -eq 0 ]; then
		fs_class=same
		cmp -s "$fs_ref.out" "$out.out" ||
			fs_why="status 0 but stdout differs from glibc's run's"
	elif [ "$st" -eq 124 ]; then
		fs_why="hung ($fs_limit s)"
	else
		for c in $fs_codes; do [ "$st" -eq "$c" ] && break; done
		if [ "$st" -ne "$c" ]; then
			fs_why="status $st (allowed: $fs_codes): $(head -c 200 "$out.err")"
		elif ! grep -Eq "$fs_oom" "$out.err"; then
			fs_why="status $st without the out-of-memory report: $(head -c 200 "$out.err")"
		fi
	fi
	[ -n "$fs_why" ] && fs_why="K=$k: $fs_why"
}

# fs_sweep NAME SO COUNT: NAME's program at COUNT values of K spread
# over its range (every K if COUNT covers it), in the current directory;
# prints a line and returns non-zero if any run ended as it may not.
fs_sweep() {
	local name=$1 n=$3 k st bad=0 same=0 oom=0 first=0 step
	fs_so=$2 fs_limit=${FS_TIMEOUT:-60} fs_ref=ref
	fs_setup "$name"
	if ! fs_run 0 "$fs_ref"; then
		echo "fail-sweep: $name FAILED with glibc's malloc: $(head -c 200 ref.err)"
		return 1
	fi
	step=$(((fs_hi - fs_lo + 1 + n - 1) / n))
	for ((k = fs_lo; k <= fs_hi; k += step)); do
		fs_run "$k" run
		st=$?
		fs_judge "$k" "$st" run
		if [ -n "$fs_why" ]; then
			echo "fail-sweep: $name: $fs_why"
			bad=$((bad + 1))
		elif [ "$fs_class" = same ]; then
			same=$((same + 1))
		else
			oom=$((oom + 1))
			[ "$first" -eq 0 ] && first=$k && cp run.err first.err &&
				echo "$st" >first.st
		fi
	done
	# The same K twice: the same end, word for word.
	if [ "$first" -gt 0 ]; then
		fs_run "$first" again
		st=$?
		if [ "$st" != "$(cat first.st)" ] || ! cmp -s again.err first.err; then
			echo "fail-sweep: $name: K=$first ended differently twice: status $(cat first.st), then $st"
			bad=$((bad + 1))
		fi
	fi
	[ "$oom" -eq 0 ] && bad=$((bad + 1)) &&
		echo "fail-sweep: $name: no run met an out-of-memory report (K in [$fs_lo, $fs_hi] past its calls?)"
	echo "fail-sweep: $name $([ $bad -eq 0 ] && echo ok || echo FAILED):" \
		"K in [$fs_lo, $fs_hi] step $step: $same as with glibc," \
		"$oom its out-of-memory report, $bad not as they may"
	[ $bad -eq 0 ]
}
