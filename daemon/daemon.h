/* SPDX-License-Identifier: MIT */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <sys/types.h>

/* The daemon: the sd-event loop, the netlink sockets, the config and state
 * file, and the operations the control socket offers. */

struct daemon;

struct daemon_options {
	const char *config_path; /* NULL: the default */
	bool config_explicit;	 /* given on the command line: must exist */
	const char *socket_path; /* overrides the config */
	const char *state_dir;	 /* overrides the config */
	const char *run_prefix;	 /* tests only: where other managers' state lives */
	int log_level;		 /* -1: from the config */
	bool dry_run;		 /* print the kernel changes, make none, write nothing */
	int listen_fds;		 /* sockets systemd passed (sd_listen_fds), read before any
				  * descriptor of ours can take their numbers */
};

/* Who is asking, from the socket's peer credentials. */
struct daemon_caller {
	uid_t uid;
	pid_t pid;
};

int daemon_new(const struct daemon_options *o, struct daemon **ret);
void daemon_free(struct daemon *d);
/* Run until SIGTERM/SIGINT. Returns the exit status. */
int daemon_run(struct daemon *d);
/* Print the kernel changes the current config and state would make. */
int daemon_dry_run(struct daemon *d);

/* --dry-run style check of the config: every error printed, 0 or -EINVAL. */
int daemon_check_config(const struct daemon_options *o);

/* Operations. Each returns 0 with the reply parameters in *ret, or a
 * negative errno with the Varlink error name in *ret_error and its
 * parameters (a "message" included) in *ret. ifname NULL = global. */
int daemon_list_tokens(struct daemon *d, const char *ifname, json_object **ret,
		       const char **ret_error);
int daemon_set_token(struct daemon *d, const struct daemon_caller *c, const char *ifname,
		     const char *token, json_object **ret, const char **ret_error);
int daemon_delete_token(struct daemon *d, const struct daemon_caller *c, const char *ifname,
			json_object **ret, const char **ret_error);
int daemon_flush_tokens(struct daemon *d, const struct daemon_caller *c, const char *ifname,
			json_object **ret, const char **ret_error);
int daemon_resume_token(struct daemon *d, const struct daemon_caller *c, const char *ifname,
			json_object **ret, const char **ret_error);
int daemon_get_status(struct daemon *d, json_object **ret, const char **ret_error);
/* Associations. name NULL = all (list only). */
int daemon_list_assocs(struct daemon *d, const char *name, json_object **ret,
		       const char **ret_error);
int daemon_rotate_assoc(struct daemon *d, const struct daemon_caller *c, const char *name,
			json_object **ret, const char **ret_error);
int daemon_add_assoc(struct daemon *d, const struct daemon_caller *c, json_object *params,
		     json_object **ret, const char **ret_error);
int daemon_delete_assoc(struct daemon *d, const struct daemon_caller *c, const char *name,
			json_object **ret, const char **ret_error);
int daemon_flush_assocs(struct daemon *d, const struct daemon_caller *c, json_object **ret,
			const char **ret_error);
int daemon_release_assoc(struct daemon *d, const struct daemon_caller *c, const char *name,
			 json_object **ret, const char **ret_error);

/* Helper for error replies: {"message": ..., plus key/value pairs}. */
json_object *daemon_error_params(const char *message, ...) __attribute__((sentinel));
