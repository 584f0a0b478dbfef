/* SPDX-License-Identifier: MIT */
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "Usage: tokend [OPTIONS]\n"
	    "\n"
	    "Hold IPv6 interface tokens and IPsec associations (keys rotated by the\n"
	    "clock) and keep the kernel in line with them.\n"
	    "\n"
	    "  -c, --config PATH     config file (default %s/tokend/tokend.conf;\n"
	    "                        drop-ins from PATH.d/*.conf)\n"
	    "  -s, --socket PATH     control socket (overrides the config)\n"
	    "  -S, --state-dir DIR   state directory (overrides the config)\n"
	    "      --check-config    report every config error as FILE:LINE and exit\n"
	    "      --dry-run         print the kernel changes the config would make; make none\n"
	    "  -d, --debug           log at debug level (netlink requests and replies)\n"
	    "      --log-level LVL   err, warning, notice, info or debug\n"
	    "  -h, --help            show this help\n"
	    "      --version         show the version\n",
	    TOKEND_SYSCONFDIR);
}

int main(int argc, char **argv)
{
	enum { OPT_CHECK = 256, OPT_VERSION, OPT_LOG_LEVEL, OPT_RUN_PREFIX, OPT_DRY_RUN };
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"socket", required_argument, NULL, 's'},
	    {"state-dir", required_argument, NULL, 'S'},
	    {"check-config", no_argument, NULL, OPT_CHECK},
	    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
	    {"debug", no_argument, NULL, 'd'},
	    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, OPT_VERSION},
	    /* For tests: where other managers' runtime state is looked for. */
	    {"run-prefix", required_argument, NULL, OPT_RUN_PREFIX},
	    {NULL, 0, NULL, 0},
	};
	/* A fixed threshold (setting it turns off glibc's adjustment of it):
	 * large buffers, such as a reply listing thousands of objects, are
	 * mapped on their own and given back when freed, so the daemon's
	 * memory returns to its size after a burst of such calls instead of
	 * staying at the peak in a fragmented heap. */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	/* First: descriptors 3 and up may be systemd's sockets. */
	struct daemon_options o = {.log_level = -1, .listen_fds = sd_listen_fds(1)};
	struct daemon *d = NULL;
	bool check = false;
	int c, r;

	while ((c = getopt_long(argc, argv, "c:s:S:dh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o.config_path = optarg;
			o.config_explicit = true;
			break;
		case 's':
			o.socket_path = optarg;
			break;
		case 'S':
			o.state_dir = optarg;
			break;
		case 'd':
			o.log_level = LOG_DEBUG;
			break;
		case OPT_LOG_LEVEL:
			o.log_level = log_level_from_string(optarg);
			if (o.log_level < 0) {
				fprintf(stderr, "tokend: unknown log level \"%s\"\n", optarg);
				return 2;
			}
			break;
		case OPT_CHECK:
			check = true;
			break;
		case OPT_DRY_RUN:
			o.dry_run = true;
			break;
		case OPT_RUN_PREFIX:
			o.run_prefix = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case OPT_VERSION:
			printf("tokend %s\n", TOKEND_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tokend: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (o.log_level >= 0)
		log_set_level(o.log_level);
	/* "<N>" prefixes are for journald; a person at a terminal gets plain
	 * lines. */
	log_set_prefix_enabled(!isatty(STDERR_FILENO));
	/* FILE:LINE: MESSAGE lines, for people, editors and CI alike. */
	if (check) {
		log_set_prefix_enabled(false);
		return daemon_check_config(&o) < 0 ? 1 : 0;
	}

	/* Key material will live in this process: no core dumps. */
	prctl(PR_SET_DUMPABLE, 0);
	setrlimit(RLIMIT_CORE, &(struct rlimit){0, 0});

	r = daemon_new(&o, &d);
	if (r < 0)
		return 1;
	r = o.dry_run ? daemon_dry_run(d) : daemon_run(d);
	daemon_free(d);
	return r;
}
