/*
 * qc_mlock: the LD_PRELOAD shim of `quietcore exec --mlock`.
 *
 * mlockall() does not survive execve(), so quietcore cannot lock a workload's memory before
 * starting it: this library's constructor does it inside the workload, before main().
 * MCL_FUTURE also locks what the program maps later (heap, thread stacks). quietcore raised
 * RLIMIT_MEMLOCK to unlimited first, so a failure here is real: it is reported and the program
 * does not run unlocked (the user asked for locked memory).
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void say(const char *text)
{
    /* write(2), not stdio: nothing of the program is initialised yet. */
    ssize_t written = write(STDERR_FILENO, text, strlen(text));
    (void)written;
}

__attribute__((constructor)) static void qc_mlockall(void)
{
    if (mlockall(MCL_CURRENT | MCL_FUTURE) == 0)
        return;
    const char *reason = strerror(errno);
    say("quietcore exec --mlock: mlockall(MCL_CURRENT|MCL_FUTURE) failed: ");
    say(reason);
    say("\n");
    _exit(126);
}
