/*
 * qc_common.h: what qc_probe and qc_inject share: strict argument parsing, pinning to one
 * CPU, SCHED_FIFO with the RT-throttling refusal, memory locking.
 *
 * quietcore ships each program as one self-contained C file (build.py pastes this header in
 * place of its #include), so a host with only a compiler can build it from a single upload.
 */
#ifndef QC_COMMON_H
#define QC_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* Exit codes of the probe protocol. */
enum { EXIT_BAD_ARGS = 2, EXIT_NO_POLICY = 3, EXIT_OTHER = 4 };

#define RT_RUNTIME_PATH "/proc/sys/kernel/sched_rt_runtime_us"
#define RT_PERIOD_PATH "/proc/sys/kernel/sched_rt_period_us"

__attribute__((noreturn, format(printf, 2, 3)))
static void die(int code, const char *format, ...)
{
	va_list args;

	va_start(args, format);
	fputs("error ", stderr);
	vfprintf(stderr, format, args);
	fputc('\n', stderr);
	va_end(args);
	exit(code);
}

/* One --flag VALUE option: a decimal integer within [min, max]. */
struct flag {
	const char *name;
	uint64_t min, max;
	int required;
	uint64_t value; /* holds the default until the flag is given */
	int seen;
};

/* Plain decimal digits only: strtoull alone would accept "-1", " 7", "+7" and "7abc". */
static uint64_t parse_number(const struct flag *flag, const char *text)
{
	char *end;
	uint64_t value;

	if (text[0] < '0' || text[0] > '9')
		die(EXIT_BAD_ARGS, "%s: '%s' is not a non-negative integer", flag->name, text);
	errno = 0;
	value = strtoull(text, &end, 10);
	if (*end != '\0')
		die(EXIT_BAD_ARGS, "%s: '%s' is not a non-negative integer", flag->name, text);
	if (errno == ERANGE || value < flag->min || value > flag->max)
		die(EXIT_BAD_ARGS, "%s: %s is out of range %llu..%llu", flag->name, text,
		    (unsigned long long)flag->min, (unsigned long long)flag->max);
	return value;
}

static struct flag *find_flag(struct flag *flags, size_t count, const char *name)
{
	for (size_t i = 0; i < count; i++)
		if (strcmp(flags[i].name, name) == 0)
			return &flags[i];
	return NULL;
}

static void parse_flags(int argc, char **argv, struct flag *flags, size_t count)
{
	for (int i = 1; i < argc; i += 2) {
		struct flag *flag = find_flag(flags, count, argv[i]);

		if (flag == NULL)
			die(EXIT_BAD_ARGS, "unknown argument '%s'", argv[i]);
		if (i + 1 >= argc)
			die(EXIT_BAD_ARGS, "%s needs a value", flag->name);
		if (flag->seen)
			die(EXIT_BAD_ARGS, "%s given twice", flag->name);
		flag->value = parse_number(flag, argv[i + 1]);
		flag->seen = 1;
	}
	for (size_t i = 0; i < count; i++)
		if (flags[i].required && !flags[i].seen)
			die(EXIT_BAD_ARGS, "%s is required", flags[i].name);
}

static void pin_to_cpu(unsigned cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0)
		die(EXIT_NO_POLICY, "cannot pin to CPU %u: %s", cpu, strerror(errno));
}

static int read_long(const char *path, long *value)
{
	FILE *file = fopen(path, "r");
	int ok;

	if (file == NULL)
		return 0;
	ok = fscanf(file, "%ld", value) == 1;
	fclose(file);
	return ok;
}

/*
 * With RT throttling on (sched_rt_runtime_us != -1) the kernel takes the CPU away from a
 * SCHED_FIFO task that never sleeps for (period - runtime) every period: the probe would
 * measure the throttle, not the host. Refuse instead of reporting that as jitter.
 */
static void set_fifo(int priority)
{
	struct sched_param param = { .sched_priority = priority };
	long runtime, period = 1000000;

	if (!read_long(RT_RUNTIME_PATH, &runtime))
		die(EXIT_NO_POLICY, "--fifo refused: cannot read %s", RT_RUNTIME_PATH);
	if (runtime != -1) {
		read_long(RT_PERIOD_PATH, &period);
		die(EXIT_NO_POLICY,
		    "--fifo refused: sched_rt_runtime_us is %ld, not -1: RT throttling would stall "
		    "the probe ~%ld ms every %ld ms",
		    runtime, (period - runtime) / 1000, period / 1000);
	}
	if (sched_setscheduler(0, SCHED_FIFO, &param) != 0)
		die(EXIT_NO_POLICY, "cannot set SCHED_FIFO %d: %s", priority, strerror(errno));
}

/*
 * Best effort: without it a page fault may add a gap, which is then measured too. Only when
 * the lock cannot run out: under a finite RLIMIT_MEMLOCK, MCL_FUTURE would make allocations
 * fail once the process outgrows the limit.
 */
static void lock_memory(void)
{
	struct rlimit limit;

	if (geteuid() != 0 &&
	    (getrlimit(RLIMIT_MEMLOCK, &limit) != 0 || limit.rlim_cur != RLIM_INFINITY))
		return;
	(void)mlockall(MCL_CURRENT | MCL_FUTURE);
}

static uint64_t monotonic_ns(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

#endif
