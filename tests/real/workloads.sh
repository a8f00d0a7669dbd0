# tests/real/workloads.sh: real programs from Debian as workloads for the
# hosted malloc, sourced by tests/real/run-quick, tests/real/run-long and
# tools/bench-real. Each wl_NAME SIZE runs in the current directory (a
# scratch directory of its own), prints output that does not depend on the
# allocator (checksums, hashes, counts), and exits non-zero on failure.
# SIZE is "quick" or "full". REPO is this repository's top directory.

# The programs a workload needs; a workload whose program is missing is
# skipped, saying so.
wl_needs() {
	case $1 in
	python) echo /usr/bin/python3 ;;
	gcc) echo gcc ;;
	git) echo git ;;
	sqlite) echo sqlite3 ;;
	threads) echo perl ;;
	text) echo make ;;
	alloc) echo /usr/bin/python3 ;;
	esac
}

# py_script SIZE QUICK_N FULL_N: the Python script on stdin, with n
# (QUICK_N, or FULL_N at size full) as its argument; PYTHONHASHSEED fixes
# set and dict order for the output.
py_script() {
	local n=$2
	[ "$1" = full ] && n=$3
	PYTHONHASHSEED=0 /usr/bin/python3 -S - "$n"
}

# Python: dicts, lists, strings, JSON, sorting, small objects by the
# million. PYTHONHASHSEED fixes set and dict order for the output.
wl_python() {
	py_script "$1" 200000 800000 <<'EOF'
import sys, json, hashlib, collections
n = int(sys.argv[1])
d = {str(i): [i, str(i) * (i % 7), (i, i + 1)] for i in range(n)}
s = json.dumps(d, sort_keys=True)
back = json.loads(s)
words = [("w%d" % (i * 7919 % n)) * (1 + i % 5) for i in range(n)]
words.sort()
cnt = collections.Counter(w[:4] for w in words)
class P:
    __slots__ = ("x", "y")
    def __init__(self, x, y):
        self.x, self.y = x, y
pts = [P(i, -i) for i in range(n)]
acc = sum(p.x - p.y for p in pts)
h = hashlib.sha256(s.encode()).hexdigest()
print(len(s), len(back), words[n // 2], cnt.most_common(3), acc, h)
EOF
}

# gcc -O2 on this project's own host sources: the objects must be the same
# bytes whatever malloc gcc ran on.
wl_gcc() {
	local srcs="mm/palloc.c mm/spanheap.c mm/sizeclasses.c kernel/format.c"
	[ "$1" = full ] && srcs="$(cd "$REPO" && ls mm/*.c kernel/format.c \
		kernel/acpi_parse.c tests/host/spanheap_test.c)"
	local f o
	for f in $srcs; do
		o=$(echo "$f" | tr / _).o
		gcc -std=gnu11 -O2 -g0 -DMM_HOSTED=1 -I"$REPO" -c "$REPO/$f" \
			-o "$o" || return 1
		echo "$f $(sha256sum <"$o" | cut -c1-16)"
	done
}

# git on a scratch repository: commits with fixed dates (so the hashes are
# the same every run), branches, a merge, log, diff, gc and fsck.
wl_git() {
	local nfiles=150 ncommits=12
	[ "$1" = full ] && nfiles=1500 ncommits=40
	export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.org \
		GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.org \
		GIT_AUTHOR_DATE="2020-01-01T00:00:00Z" \
		GIT_COMMITTER_DATE="2020-01-01T00:00:00Z" \
		GIT_CONFIG_NOSYSTEM=1 HOME=$PWD
	git init -q -b main repo && cd repo || return 1
	# No automatic gc: it would run detached, in the background, racing
	# the explicit one below (which then fails now and then).
	git config gc.auto 0 || return 1
	local i c
	for i in $(seq 1 "$nfiles"); do
		seq "$i" $((i + 200)) >"f$i.txt"
	done
	git add . && git commit -qm base || return 1
	for c in $(seq 1 "$ncommits"); do
		for i in $(seq "$c" 7 "$nfiles"); do
			echo "change $c" >>"f$i.txt"
		done
		git commit -qam "change $c" || return 1
	done
	git checkout -qb side HEAD~3 && echo side >>f1.txt &&
		git commit -qam side && git checkout -q main &&
		git merge -q --no-edit side >/dev/null || return 1
	git log --stat --format='%H %s' | sha256sum | cut -c1-16
	git diff HEAD~5 --stat | tail -1
	git gc -q && git fsck --strict --no-dangling --no-progress || return 1
	git count-objects | cut -d, -f1
	git rev-parse HEAD
}

# sqlite3: tables filled by recursive CTEs, an index, joins, grouping,
# window functions, text functions; deterministic (no random()).
wl_sqlite() {
	local n=60000
	[ "$1" = full ] && n=600000
	sqlite3 :memory: <<EOF
create table a(id integer primary key, k int, s text);
create table b(id integer primary key, aid int, v real);
with recursive c(x) as (select 1 union all select x + 1 from c where x < $n)
insert into a select x, (x * 7919) % 1000, printf('%08d-%s', x, hex(x * x)) from c;
with recursive c(x) as (select 1 union all select x + 1 from c where x < $n * 2)
insert into b select x, (x * 31) % $n + 1, x / 3.0 from c;
create index ak on a(k);
select count(*), sum(length(s)) from a;
select k, count(*), round(sum(v), 2) from a join b on b.aid = a.id
 group by k order by 3 desc limit 3;
select id, rank() over (order by length(s) desc, s) from a where k = 7 limit 3;
select group_concat(substr(s, 1, 3), '') like '%0%' from a where id < 1000;
EOF
}

# Threads that allocate, in programs from Debian (the workloads above are
# single-threaded, but for git's packing): sort with two threads, merging
# runs spilled to temporary files (a 1 MiB buffer), and Perl interpreter
# threads, four at once, each filling and sorting a hash of its own.
wl_threads() {
	local n=300000 nh=40000
	[ "$1" = full ] && n=2000000 nh=200000
	seq 1 "$n" | awk '{ print ($1 * 7919) % 1000003, "w" ($1 % 977) }' \
		>in.txt || return 1
	sort --parallel=2 -S 1M -T . -k2,2 -k1,1n in.txt | sha256sum |
		cut -c1-16
	sort --parallel=2 -n -u in.txt | wc -l
	perl -Mthreads -e '
		my $nh = $ARGV[0];
		my @t = map { my $k = $_; threads->create(sub {
			my %h;
			$h{"k$_"} = [$_, "v" x ($_ % 13)] for 1 .. $nh;
			my @s = sort { $a cmp $b } keys %h;
			my $sum = 0;
			$sum += $h{$_}[0] + length($h{$_}[1]) for @s[0 .. 999];
			"$k $s[0] $s[-1] $sum";
		}) } 1 .. 4;
		print $_->join, "\n" for @t;' "$nh"
}

# Text tools on a generated file, as a build or a log crunch runs them:
# awk's associative arrays and string concatenation, sed, sort and uniq,
# a Perl one-liner's hash of growing strings, and make -j2 on a Makefile
# of 200 pattern-rule targets (functions, $(shell), prerequisites).
wl_text() {
	local n=200000
	[ "$1" = full ] && n=2000000
	seq 1 "$n" | awk '{ printf "%d w%d %s\n", ($1 * 7919) % 100003,
		$1 % 4099, substr("abcdefghijklmnopqrstuvwxyz", $1 % 26 + 1, 1) }' \
		>big.txt || return 1
	awk '{ c[$2]++; s[$3] = s[$3] $1 % 10 } END { n = 0
		for (k in c) n += c[k]; print n, length(c), length(s["a"]) }' \
		big.txt || return 1
	sed -e 's/w\([0-9]*\)/<\1>/' -e '/z$/d' big.txt | sha256sum |
		cut -c1-16
	sort -k2,2 -k1,1n big.txt | uniq -c -f1 | sha256sum | cut -c1-16
	perl -ne '@f = split; $h{$f[1]} .= $f[0]; END { print scalar(keys %h),
		" ", length(join("", map { $h{$_} } sort keys %h)), "\n" }' \
		big.txt || return 1
	mkdir mk && cat >mk/Makefile <<'MAKEFILE'
N := $(shell seq 1 200)
OUT := $(addprefix out/,$(addsuffix .txt,$(N)))
all: sum.txt
out/%.txt: | out
	@echo $(words $(wordlist 1,$*,$(N))) $(patsubst %,x%,$*) >$@
out:
	@mkdir -p out
sum.txt: $(OUT)
	@cat $^ | sort | sha256sum | cut -c1-16 >$@
MAKEFILE
	make -s -j2 -C mk && cat mk/sum.txt
}

# An allocation-heavy Python run for the benchmark: object churn with
# mixed lifetimes (a tree, a cache, temporaries) on one thread.
wl_alloc() {
	py_script "$1" 300000 2000000 <<'EOF'
import sys
n = int(sys.argv[1])
cache = {}
total = 0
for i in range(n):
    t = (i, str(i), [i] * (i % 9), {"k": i})
    cache[i % 50000] = t
    total += len(t[1]) + len(t[2])
    if i % 100000 == 0:
        cache = {k: v for k, v in cache.items() if k % 3}
def tree(d):
    return None if d == 0 else (tree(d - 1), tree(d - 1))
for _ in range(max(1, n // 100000)):
    tree(16)
print(total, len(cache))
EOF
}
