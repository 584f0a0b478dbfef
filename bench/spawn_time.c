/* SPDX-License-Identifier: MIT */
/*
 * spawn_time: wall-clock time of a whole process, fork and exec included.
 *
 *   spawn_time [-n RUNS] [-W WARMUP] [-b HOOK] [-a HOOK] [-r] [-o LOG] -- CMD [ARG...]
 *
 * Plain mode: from just before fork() to the return of waitpid(); the command
 * must exit 0. Ready mode (-r): CMD is a daemon speaking the sd_notify
 * protocol; it gets NOTIFY_SOCKET pointing at a datagram socket of ours, and
 * the time runs until a datagram with the line READY=1 arrives. The daemon
 * is then stopped with SIGTERM (untimed).
 *
 * Hooks are shell commands run before (-b) and after (-a) every run, untimed;
 * a hook that fails stops everything (a run that cannot be prepared or whose
 * result is wrong must not be reported as a figure). Warm-up runs go through
 * the same steps and are not counted.
 *
 * Also reported: the CPU time the command used, from wait4() (for a daemon,
 * over its whole life until it exited on SIGTERM). System time includes the
 * kernel's work on netlink requests, which runs in the sender's context. The
 * total is exact; the user/system split is sampled at each timer tick by the
 * kernel (with tick accounting) and only approximate for short runs.
 *
 * Output: "run N: X us (cpu ...)" lines, then "summary runs=... min_us=...
 * median_us=... max_us=... cpu_median_us=... user_median_us=...
 * sys_median_us=...". Exit status 0 when every run worked, 1 otherwise, 2 for bad
 * usage.
 */
/* clock_gettime, mkdtemp, wait4, sigaction...: also when built outside CMake. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* How often a daemon that has not signalled yet is checked for having died. */
#define CHILD_CHECK_MS 20

/* After READY=1, how long to keep listening for the STATUS= line that usually
 * follows (printed for the reader; not part of the figure). */
#define STATUS_GRACE_MS 300

#define STOP_TIMEOUT_MS 10000

/* Set by SIGINT/SIGTERM/SIGHUP: stop the daemon we started, clean up, leave. */
static volatile sig_atomic_t interrupted;

struct options {
	unsigned runs;
	unsigned warmup;
	const char *before;
	const char *after;
	const char *log;
	bool ready;
	unsigned ready_timeout_ms;
	char **argv;
};

struct notify {
	int fd;
	char dir[64];
	char path[sizeof(((struct sockaddr_un *)NULL)->sun_path)];
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

/* wait4() with a deadline; polls, since a child of ours has no fd to wait on
 * without pidfd. 0 and *status, *ru, -ETIMEDOUT, or another negative errno. */
static int wait_child(pid_t pid, unsigned timeout_ms, int *status, struct rusage *ru)
{
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000;

	for (;;) {
		pid_t r = wait4(pid, status, WNOHANG, ru);

		if (r == pid)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
		if (now_ns() >= end)
			return -ETIMEDOUT;
		poll(NULL, 0, 5);
	}
}

/* Stop a daemon: SIGTERM, then SIGKILL if it does not go. 0 and *ru if it
 * exited 0. */
static int stop_child(pid_t pid, struct rusage *ru)
{
	int status = 0, r;

	kill(pid, SIGTERM);
	r = wait_child(pid, STOP_TIMEOUT_MS, &status, ru);
	if (r == -ETIMEDOUT) {
		fprintf(stderr, "spawn_time: pid %d ignored SIGTERM for %u ms; killing it\n",
			(int)pid, STOP_TIMEOUT_MS);
		kill(pid, SIGKILL);
		r = wait_child(pid, STOP_TIMEOUT_MS, &status, ru);
		return r < 0 ? r : -ETIMEDOUT;
	}
	if (r < 0)
		return r;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr,
			"spawn_time: the daemon did not exit cleanly on SIGTERM (status "
			"0x%x)\n",
			(unsigned)status);
		return -EPROTO;
	}
	return 0;
}

static int run_hook(const char *what, const char *cmd)
{
	int status = system(cmd);

	if (status == -1)
		return -errno;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "spawn_time: %s hook failed (status 0x%x): %s\n", what,
			(unsigned)status, cmd);
		return -EPROTO;
	}
	return 0;
}

static int notify_open(struct notify *n)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	snprintf(n->dir, sizeof(n->dir), "/tmp/spawn_time.XXXXXX");
	if (!mkdtemp(n->dir))
		return -errno;
	snprintf(n->path, sizeof(n->path), "%s/notify", n->dir);
	n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (n->fd < 0)
		return -errno;
	memcpy(sa.sun_path, n->path, strlen(n->path) + 1);
	if (bind(n->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	return 0;
}

static void notify_close(struct notify *n)
{
	if (n->fd >= 0)
		close(n->fd);
	n->fd = -1;
	if (n->path[0])
		unlink(n->path);
	if (n->dir[0])
		rmdir(n->dir);
}

/* Does a notify datagram hold the line `line`? Copies the STATUS= line, if
 * any, to status. */
static bool has_line(char *msg, const char *line, char *status, size_t status_size)
{
	bool found = false;

	for (char *save = NULL, *l = strtok_r(msg, "\n", &save); l;
	     l = strtok_r(NULL, "\n", &save)) {
		if (strcmp(l, line) == 0)
			found = true;
		else if (status && strncmp(l, "STATUS=", 7) == 0)
			snprintf(status, status_size, "%s", l + 7);
	}
	return found;
}

/* Drop whatever an earlier daemon left in the socket. */
static void notify_drain(struct notify *n)
{
	char buf[4096];

	while (recv(n->fd, buf, sizeof(buf), 0) >= 0)
		;
}

/* Reads datagrams until one holds `line` or timeout_ms passes; also notices
 * the daemon dying first. 0 with *t_ns set at the reception, -ETIMEDOUT,
 * -ECHILD (exited before saying it), or another negative errno. */
static int notify_wait(struct notify *n, pid_t pid, const char *line, unsigned timeout_ms,
		       uint64_t *t_ns, char *status, size_t status_size)
{
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000;

	for (;;) {
		struct pollfd pfd = {.fd = n->fd, .events = POLLIN};
		char buf[4096];
		uint64_t now = now_ns();
		ssize_t len;
		int r, wst;

		if (interrupted)
			return -EINTR;
		if (now >= end)
			return -ETIMEDOUT;
		r = poll(&pfd, 1, CHILD_CHECK_MS);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r > 0) {
			len = recv(n->fd, buf, sizeof(buf) - 1, 0);
			if (len < 0) {
				if (errno == EAGAIN || errno == EINTR)
					continue;
				return -errno;
			}
			now = now_ns();
			buf[len] = '\0';
			if (has_line(buf, line, status, status_size)) {
				*t_ns = now;
				return 0;
			}
			continue;
		}
		if (pid > 0 && waitpid(pid, &wst, WNOHANG) == pid) {
			fprintf(stderr, "spawn_time: the daemon exited (status 0x%x) before %s\n",
				(unsigned)wst, line);
			return -ECHILD;
		}
	}
}

/* The child side: never returns. */
static void exec_child(const struct options *o, const struct notify *n)
{
	if (o->log) {
		int fd = open(o->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

		if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)
			_exit(126);
	}
	if (n && setenv("NOTIFY_SOCKET", n->path, 1) < 0)
		_exit(126);
	execvp(o->argv[0], o->argv);
	_exit(127);
}

/* One timed run. 0, *elapsed_ns and the child's *ru, or a negative errno. In
 * ready mode, status gets the daemon's last STATUS= text ("" if none). */
static int run_once(const struct options *o, struct notify *n, uint64_t *elapsed_ns,
		    struct rusage *ru, char *status, size_t status_size)
{
	uint64_t t0, t1, ignored;
	pid_t pid;
	int wst, r;

	if (n)
		notify_drain(n);
	fflush(NULL);
	t0 = now_ns();
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0)
		exec_child(o, n);

	if (!n) {
		/* On Ctrl-C the child got the signal too: wait for it anyway. */
		while (wait4(pid, &wst, 0, ru) < 0)
			if (errno != EINTR)
				return -errno;
		t1 = now_ns();
		if (interrupted)
			return -EINTR;
		if (!WIFEXITED(wst) || WEXITSTATUS(wst) != 0) {
			fprintf(stderr, "spawn_time: %s failed (status 0x%x)\n", o->argv[0],
				(unsigned)wst);
			return -EPROTO;
		}
		*elapsed_ns = t1 - t0;
		return 0;
	}

	status[0] = '\0';
	r = notify_wait(n, pid, "READY=1", o->ready_timeout_ms, &t1, status, status_size);
	if (r < 0) {
		if (r != -ECHILD) {
			fprintf(stderr, "spawn_time: no READY=1 from %s: %s\n", o->argv[0],
				strerror(-r));
			stop_child(pid, ru);
		}
		return r;
	}
	*elapsed_ns = t1 - t0;
	/* The daemon's own summary, for the reader. No line is "": this only
	 * listens for the grace period. pid 0: the daemon must not be reaped
	 * here, stop_child() does that. */
	if (!status[0])
		notify_wait(n, 0, "", STATUS_GRACE_MS, &ignored, status, status_size);
	return stop_child(pid, ru);
}

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static double us(uint64_t ns)
{
	return (double)ns / 1000.0;
}

static uint64_t tv_ns(const struct timeval *tv)
{
	return (uint64_t)tv->tv_sec * UINT64_C(1000000000) + (uint64_t)tv->tv_usec * 1000;
}

/* Lower median (sorts v): for an even count, a value that was measured. */
static uint64_t median(uint64_t *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	return v[(n - 1) / 2];
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: spawn_time [-n RUNS] [-W WARMUP] [-b HOOK] [-a HOOK] [-r [-t SECONDS]]\n"
		   "                  [-o LOG] -- CMD [ARG...]\n"
		   "\n"
		   "Time CMD as a whole process, RUNS times (default 1), and print the median.\n"
		   "  -W  untimed runs first (default 0)\n"
		   "  -b  shell command run before every run (untimed; must succeed)\n"
		   "  -a  shell command run after every run (untimed; must succeed)\n"
		   "  -r  CMD is an sd_notify daemon: time until READY=1, then SIGTERM it\n"
		   "  -t  in -r mode, give up after this many seconds (default 60)\n"
		   "  -o  append CMD's stdout and stderr to LOG\n");
}

static int parse_uint(const char *s, unsigned min, unsigned max, unsigned *ret)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
		return -EINVAL;
	*ret = (unsigned)v;
	return 0;
}

/* 0, 1 when help was asked for, or -EINVAL. */
static int parse_options(int argc, char **argv, struct options *o)
{
	unsigned secs = 60;
	int c;

	*o = (struct options){.runs = 1};
	while ((c = getopt(argc, argv, "+n:W:b:a:rt:o:h")) != -1) {
		int r = 0;

		switch (c) {
		case 'n':
			r = parse_uint(optarg, 1, 100000, &o->runs);
			break;
		case 'W':
			r = parse_uint(optarg, 0, 100000, &o->warmup);
			break;
		case 'b':
			o->before = optarg;
			break;
		case 'a':
			o->after = optarg;
			break;
		case 'r':
			o->ready = true;
			break;
		case 't':
			r = parse_uint(optarg, 1, 3600, &secs);
			break;
		case 'o':
			o->log = optarg;
			break;
		case 'h':
			return 1;
		default:
			return -EINVAL;
		}
		if (r < 0) {
			fprintf(stderr, "spawn_time: invalid -%c \"%s\"\n", c, optarg);
			return r;
		}
	}
	if (optind >= argc)
		return -EINVAL;
	o->ready_timeout_ms = secs * 1000;
	o->argv = argv + optind;
	return 0;
}

int main(int argc, char **argv)
{
	struct sigaction sa = {.sa_handler = on_signal};
	struct notify n = {.fd = -1};
	struct options o;
	uint64_t *samples, *cpu, *user, *sys;
	unsigned done = 0;
	int r, rc = 0;

	r = parse_options(argc, argv, &o);
	if (r != 0) {
		usage(r > 0 ? stdout : stderr);
		return r > 0 ? 0 : 2;
	}
	samples = calloc(o.runs, sizeof(*samples));
	cpu = calloc(o.runs, sizeof(*cpu));
	user = calloc(o.runs, sizeof(*user));
	sys = calloc(o.runs, sizeof(*sys));
	if (!samples || !cpu || !user || !sys) {
		fprintf(stderr, "spawn_time: out of memory\n");
		rc = 1;
		goto out;
	}
	if (o.ready) {
		r = notify_open(&n);
		if (r < 0) {
			fprintf(stderr, "spawn_time: notify socket: %s\n", strerror(-r));
			rc = 1;
			goto out;
		}
	}
	/* No SA_RESTART: a blocked poll() or waitpid() returns on the signal. A
	 * handler, unlike SIG_IGN, is reset by exec and does not leak into the
	 * command. */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	for (unsigned i = 0; i < o.warmup + o.runs; i++) {
		bool counted = i >= o.warmup;
		char status[512] = "";
		struct rusage ru = {0};
		uint64_t ns = 0;

		if (interrupted) {
			r = -EINTR;
			break;
		}
		if (o.before && (r = run_hook("before", o.before)) < 0)
			break;
		r = run_once(&o, o.ready ? &n : NULL, &ns, &ru, status, sizeof(status));
		if (r < 0)
			break;
		if (o.after && (r = run_hook("after", o.after)) < 0)
			break;
		if (counted) {
			cpu[done] = tv_ns(&ru.ru_utime) + tv_ns(&ru.ru_stime);
			user[done] = tv_ns(&ru.ru_utime);
			sys[done] = tv_ns(&ru.ru_stime);
			samples[done++] = ns;
			printf("run %u: %.1f us", done, us(ns));
		} else {
			printf("warm-up %u: %.1f us", i + 1, us(ns));
		}
		printf(" (cpu %.1f us: user ~%.1f, sys ~%.1f)\n",
		       us(tv_ns(&ru.ru_utime) + tv_ns(&ru.ru_stime)), us(tv_ns(&ru.ru_utime)),
		       us(tv_ns(&ru.ru_stime)));
		if (status[0])
			printf("  daemon status: %s\n", status);
		fflush(stdout);
	}
	if (r < 0)
		rc = interrupted ? 130 : 1;
	if (done > 0) {
		uint64_t mid = median(samples, done);

		printf("summary runs=%u min_us=%.1f median_us=%.1f max_us=%.1f cpu_median_us=%.1f "
		       "user_median_us=%.1f sys_median_us=%.1f\n",
		       done, us(samples[0]), us(mid), us(samples[done - 1]), us(median(cpu, done)),
		       us(median(user, done)), us(median(sys, done)));
	}
out:
	notify_close(&n);
	free(samples);
	free(cpu);
	free(user);
	free(sys);
	return rc;
}
