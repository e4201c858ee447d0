/*
 * qc_probe: spin on one CPU and record every gap in execution longer than a threshold.
 *
 * The sysjitter/hiccups method: read a cycle counter in a tight loop; when two consecutive
 * reads are further apart than the threshold, something (an interrupt, another task, the
 * hypervisor) had the CPU for that long. Only those gaps are kept, so the loop stays tight and
 * the output small. The output protocol is parsed by quietcore/probes/raw.py.
 *
 * usage: qc_probe --cpu N --duration-ns D --threshold-ns T [--fifo PRIO] [--max-events M]
 *                 [--warmup-ns W]
 */
#include "qc_common.h"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define HAVE_TSC 1
/*
 * No lfence: without it a read may happen a few cycles early or late, nothing against a
 * threshold of microseconds, while the fence would lengthen every loop.
 */
static inline uint64_t read_ticks(void)
{
	return __rdtsc();
}
#else
#define HAVE_TSC 0
static inline uint64_t read_ticks(void)
{
	return monotonic_ns();
}
#endif

#define DEFAULT_MAX_EVENTS 1048576
#define DEFAULT_WARMUP_NS 200000000
/* The TSC is calibrated over the warm-up first (to convert the threshold), so it needs one. */
#define MIN_WARMUP_NS 10000000

/* Positions in the flag table. */
enum { CPU, DURATION, THRESHOLD, FIFO, MAX_EVENTS, WARMUP, FLAG_COUNT };

struct gap {
	uint64_t offset; /* ticks from the start of the spin to the last read before the gap */
	uint64_t length; /* ticks */
};

struct gaps {
	struct gap *kept;
	uint64_t capacity, stored;
	uint64_t count, total, longest; /* of all gaps, stored or not */
};

/* A tick count and the CLOCK_MONOTONIC time read at (nearly) the same instant. */
struct clock_pair {
	uint64_t ticks, ns;
};

struct run {
	uint64_t start, end, loops; /* ticks, ticks, iterations */
	long nvcsw, nivcsw;
};

/* Take the closest of a few tries: a read interrupted in between would skew the frequency. */
static struct clock_pair read_clock_pair(void)
{
	struct clock_pair best = { 0, 0 };
	uint64_t best_spread = UINT64_MAX;

	for (int i = 0; i < 8; i++) {
		uint64_t before = read_ticks();
		uint64_t ns = monotonic_ns();
		uint64_t after = read_ticks();

		if (after - before < best_spread) {
			best_spread = after - before;
			best.ticks = before + (after - before) / 2;
			best.ns = ns;
		}
	}
	return best;
}

static double ns_per_tick(struct clock_pair from, struct clock_pair to)
{
	return (double)(to.ns - from.ns) / (double)(to.ticks - from.ticks);
}

static uint64_t ticks_to_ns(uint64_t ticks, double scale)
{
	return (uint64_t)((double)ticks * scale + 0.5);
}

static uint64_t ns_to_ticks(uint64_t ns, double scale)
{
	return (uint64_t)((double)ns / scale + 0.5);
}

/* Preallocated and faulted in (MAP_POPULATE) so storing an event never page-faults. */
static void alloc_gaps(struct gaps *gaps, uint64_t capacity)
{
	memset(gaps, 0, sizeof(*gaps));
	gaps->capacity = capacity;
	if (capacity == 0)
		return;
	gaps->kept = mmap(NULL, capacity * sizeof(struct gap), PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (gaps->kept == MAP_FAILED)
		die(EXIT_OTHER, "cannot allocate %llu events: %s", (unsigned long long)capacity,
		    strerror(errno));
}

/* Out of line and cold: the spin loop stays small and keeps its variables in registers. */
__attribute__((noinline, cold))
static void record_gap(struct gaps *gaps, uint64_t offset, uint64_t length)
{
	gaps->count++;
	gaps->total += length;
	if (length > gaps->longest)
		gaps->longest = length;
	if (gaps->stored < gaps->capacity) {
		gaps->kept[gaps->stored].offset = offset;
		gaps->kept[gaps->stored].length = length;
		gaps->stored++;
	}
}

/* Spinning brings the CPU out of idle states and gives the calibration a long baseline. */
static void warm_up(uint64_t duration_ns)
{
	uint64_t end = monotonic_ns() + duration_ns;

	while (monotonic_ns() < end)
		;
}

static void spin(struct run *run, struct gaps *gaps, uint64_t duration, uint64_t threshold)
{
	uint64_t start = read_ticks();
	uint64_t end = start + duration;
	uint64_t prev = start, now, loops = 0;

	do {
		now = read_ticks();
		loops++;
		if (__builtin_expect(now - prev > threshold, 0)) {
			record_gap(gaps, prev - start, now - prev);
			/* As hiccups does: the time spent storing the event is not a gap. */
			now = read_ticks();
		}
		prev = now;
	} while (now < end);
	run->start = start;
	run->end = now;
	run->loops = loops;
}

/* Context switches of the spin: the difference of two getrusage readings. */
static void spin_counting_switches(struct run *run, struct gaps *gaps, uint64_t duration,
				   uint64_t threshold)
{
	struct rusage before, after;

	getrusage(RUSAGE_SELF, &before);
	spin(run, gaps, duration, threshold);
	getrusage(RUSAGE_SELF, &after);
	run->nvcsw = after.ru_nvcsw - before.ru_nvcsw;
	run->nivcsw = after.ru_nivcsw - before.ru_nivcsw;
}

static void print_result(const struct flag *flags, const struct run *run,
			 const struct gaps *gaps, double scale)
{
	printf("qc-probe 1\nbackend c\ncpu %llu\n", (unsigned long long)flags[CPU].value);
	if (HAVE_TSC)
		printf("clock tsc\ntsc_khz %llu\n", (unsigned long long)(1e6 / scale + 0.5));
	else
		printf("clock monotonic\n");
	if (flags[FIFO].seen)
		printf("policy fifo:%llu\n", (unsigned long long)flags[FIFO].value);
	else
		printf("policy other\n");
	printf("threshold_ns %llu\n", (unsigned long long)flags[THRESHOLD].value);
	printf("duration_ns %llu\n", (unsigned long long)ticks_to_ns(run->end - run->start, scale));
	printf("loops %llu\n", (unsigned long long)run->loops);
	printf("events %llu\n", (unsigned long long)gaps->count);
	printf("interrupted_ns %llu\n", (unsigned long long)ticks_to_ns(gaps->total, scale));
	printf("max_ns %llu\n", (unsigned long long)ticks_to_ns(gaps->longest, scale));
	printf("dropped %llu\n", (unsigned long long)(gaps->count - gaps->stored));
	printf("nvcsw %ld\nnivcsw %ld\n", run->nvcsw, run->nivcsw);
	for (uint64_t i = 0; i < gaps->stored; i++)
		printf("e %llu %llu\n", (unsigned long long)ticks_to_ns(gaps->kept[i].offset, scale),
		       (unsigned long long)ticks_to_ns(gaps->kept[i].length, scale));
	printf("end\n");
	if (fflush(stdout) != 0 || ferror(stdout))
		die(EXIT_OTHER, "cannot write the result: %s", strerror(errno));
}

int main(int argc, char **argv)
{
	struct flag flags[FLAG_COUNT] = {
		[CPU] = { "--cpu", 0, CPU_SETSIZE - 1, 1, 0, 0 },
		[DURATION] = { "--duration-ns", 1, 1000000000000000ull, 1, 0, 0 },
		[THRESHOLD] = { "--threshold-ns", 1, 1000000000000ull, 1, 0, 0 },
		[FIFO] = { "--fifo", 1, 99, 0, 0, 0 },
		[MAX_EVENTS] = { "--max-events", 0, 100000000, 0, DEFAULT_MAX_EVENTS, 0 },
		[WARMUP] = { "--warmup-ns", 0, 1000000000000ull, 0, DEFAULT_WARMUP_NS, 0 },
	};
	struct gaps gaps;
	struct run run;
	struct clock_pair origin, warm, last;
	double scale;

	parse_flags(argc, argv, flags, FLAG_COUNT);
	pin_to_cpu((unsigned)flags[CPU].value);
	if (flags[FIFO].seen)
		set_fifo((int)flags[FIFO].value);
	lock_memory();
	alloc_gaps(&gaps, flags[MAX_EVENTS].value);

	origin = read_clock_pair();
	warm_up(flags[WARMUP].value > MIN_WARMUP_NS ? flags[WARMUP].value : MIN_WARMUP_NS);
	warm = read_clock_pair();
	scale = ns_per_tick(origin, warm);
	spin_counting_switches(&run, &gaps, ns_to_ticks(flags[DURATION].value, scale),
			       ns_to_ticks(flags[THRESHOLD].value, scale));
	/* Converting with the whole run's calibration, not just the warm-up's. */
	last = read_clock_pair();
	print_result(flags, &run, &gaps, ns_per_tick(origin, last));
	return 0;
}
