/*
 * qc_inject: known noise for testing the jitter probes. Pinned to one CPU at SCHED_FIFO, it
 * wakes every period and keeps the CPU until a fixed time after its deadline, so a probe on
 * that CPU must report one gap of about that length per period.
 *
 * usage: qc_inject --cpu N --period-us P --busy-us B --duration-ns D [--fifo PRIO]
 * (--fifo 0: the normal policy; default 50). Prints the spins it really made:
 *   injected <count> / busy_ns_median <n> / busy_ns_min <n> / busy_ns_max <n> / end
 */
#include "qc_common.h"

enum { CPU, PERIOD_US, BUSY_US, DURATION, FIFO, FLAG_COUNT };

/* Every spin is kept for the median: bound the memory that takes. */
#define MAX_PERIODS 10000000

static void sleep_until(uint64_t deadline_ns)
{
	struct timespec at = {
		.tv_sec = (time_t)(deadline_ns / 1000000000u),
		.tv_nsec = (long)(deadline_ns % 1000000000u),
	};

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) == EINTR)
		;
}

/*
 * Held until deadline + busy, and measured from the deadline: the timer interrupt that wakes
 * this thread arrives at the deadline and takes the CPU from the probe right then, so the
 * wake-up latency is part of the occupancy the probe sees, not extra to it.
 */
static uint64_t spin_from_deadline(uint64_t deadline_ns, uint64_t busy_ns)
{
	uint64_t now;

	do
		now = monotonic_ns();
	while (now < deadline_ns + busy_ns);
	return now - deadline_ns;
}

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static void print_spins(uint64_t *spins, uint64_t count)
{
	uint64_t median = 0, min = 0, max = 0;

	if (count > 0) {
		qsort(spins, count, sizeof(spins[0]), compare_u64);
		median = (spins[(count - 1) / 2] + spins[count / 2]) / 2;
		min = spins[0];
		max = spins[count - 1];
	}
	printf("injected %llu\nbusy_ns_median %llu\nbusy_ns_min %llu\nbusy_ns_max %llu\nend\n",
	       (unsigned long long)count, (unsigned long long)median, (unsigned long long)min,
	       (unsigned long long)max);
	if (fflush(stdout) != 0 || ferror(stdout))
		die(EXIT_OTHER, "cannot write the result: %s", strerror(errno));
}

int main(int argc, char **argv)
{
	struct flag flags[FLAG_COUNT] = {
		[CPU] = { "--cpu", 0, CPU_SETSIZE - 1, 1, 0, 0 },
		[PERIOD_US] = { "--period-us", 1, 1000000000, 1, 0, 0 },
		[BUSY_US] = { "--busy-us", 1, 1000000000, 1, 0, 0 },
		[DURATION] = { "--duration-ns", 1, 1000000000000000ull, 1, 0, 0 },
		[FIFO] = { "--fifo", 0, 99, 0, 50, 0 },
	};
	uint64_t period_ns, busy_ns, periods, count = 0, start, *spins;

	parse_flags(argc, argv, flags, FLAG_COUNT);
	period_ns = flags[PERIOD_US].value * 1000;
	busy_ns = flags[BUSY_US].value * 1000;
	/* A spin reaching into the next period would merge two injections into one gap. */
	if (busy_ns >= period_ns)
		die(EXIT_BAD_ARGS, "--busy-us must be less than --period-us");
	if (flags[DURATION].value < busy_ns)
		die(EXIT_BAD_ARGS, "--duration-ns is shorter than one spin");
	periods = (flags[DURATION].value - busy_ns) / period_ns;
	if (periods > MAX_PERIODS)
		die(EXIT_BAD_ARGS, "more than %d periods: shorten --duration-ns or lengthen --period-us",
		    MAX_PERIODS);

	pin_to_cpu((unsigned)flags[CPU].value);
	if (flags[FIFO].value > 0)
		set_fifo((int)flags[FIFO].value);
	lock_memory();
	spins = calloc(periods > 0 ? periods : 1, sizeof(*spins));
	if (spins == NULL)
		die(EXIT_OTHER, "cannot allocate %llu periods", (unsigned long long)periods);

	/* Absolute deadlines: a late wake-up does not shift every later period. */
	start = monotonic_ns();
	for (count = 0; count < periods; count++) {
		uint64_t deadline = start + (count + 1) * period_ns;

		sleep_until(deadline);
		spins[count] = spin_from_deadline(deadline, busy_ns);
	}
	print_spins(spins, count);
	return 0;
}
