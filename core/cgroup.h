/*  Control groups for module processes: one group per module below one group per core
    instance, on cgroup v2 (unified /sys/fs/cgroup) or v1 (one hierarchy per controller,
    each below the core's own group as /proc/self/cgroup shows it). Where neither is
    writable every call is a harmless no-op and the caller relies on rlimits.

    Layout: <core's group>/modcore-<16 hex of the data dir's hash>/<module>. The
    instance part keeps two cores on one machine (tests, several data dirs) from ever
    touching each other's modules. Used by the sandbox actor only (one thread). */
#ifndef MC_CGROUP_H
#define MC_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef enum { MC_CGROUP_NONE = 0, MC_CGROUP_V1 = 1, MC_CGROUP_V2 = 2 } mc_cgroup_mode_t;

typedef struct mc_cgroups_t mc_cgroups_t;

//  Limits of one module's group; 0 leaves a limit unset.
typedef struct {
    uint64_t memory_bytes; // memory (and swap: none beyond it)
    uint32_t pids;         // processes and threads
    double cpu;            // cores: 0.5 = half of one core
} mc_cgroup_limits_t;

//  What a group has used.
typedef struct {
    uint64_t cpu_ns;    // CPU time, all processes, since the group was made
    uint64_t rss_bytes; // resident anonymous memory (rss / anon)
    uint32_t pids;      // processes + threads now
    uint64_t oom_kills; // processes the kernel killed for the memory limit
} mc_cgroup_stats_t;

//  Finds the cgroup layout for the core whose data dir is data_dir. Never NULL.
mc_cgroups_t *mc_cgroups_new (const char *data_dir);

//  Frees; sets *self_p to NULL; safe on NULL. Groups are left as they are.
void mc_cgroups_destroy (mc_cgroups_t **self_p);

//  Which cgroup version is in use (NONE: rlimits only).
mc_cgroup_mode_t mc_cgroups_mode (const mc_cgroups_t *self);

//  A readable description ("v1 (memory, pids, cpu, cpuacct)", "none: ...").
const char *mc_cgroups_describe (const mc_cgroups_t *self);

//  Kills every process left in this instance's groups (a previous run of this core
//  that was killed) and removes the groups. Returns how many processes it killed.
int mc_cgroups_cleanup (mc_cgroups_t *self);

//  Removes this instance's (empty) group directories, at a clean shutdown after
//  mc_cgroups_cleanup. Returns 0 if they are gone.
int mc_cgroups_release (mc_cgroups_t *self);

//  Creates (or reuses) the module's group and sets its limits. Fills dirs with the
//  directories whose cgroup.procs the module must join (up to max). Returns the count
//  of directories (0 with mode NONE), or -1 with the reason logged.
int mc_cgroups_prepare (mc_cgroups_t *self, const char *name, const mc_cgroup_limits_t *limits,
                        char dirs[][4096], size_t max);

//  Sends sig to every process of the module's group except skip (0: none). Returns the
//  number signalled.
int mc_cgroups_signal (mc_cgroups_t *self, const char *name, int sig, pid_t skip);

//  SIGKILLs every process of the module's group until it is empty (bounded), then
//  removes the group. Returns 0 if the group is gone.
int mc_cgroups_remove (mc_cgroups_t *self, const char *name);

//  The group's usage. Returns 0, or -1 if there is no such group.
int mc_cgroups_stats (mc_cgroups_t *self, const char *name, mc_cgroup_stats_t *stats);

//  Usage of a process and all its descendants from /proc (for hosts without cgroups).
//  Returns 0, or -1 if root does not exist.
int mc_proc_tree_stats (pid_t root, mc_cgroup_stats_t *stats);

//  Up to max pids of root's descendants (not root itself). Returns the count.
size_t mc_proc_tree_pids (pid_t root, pid_t *pids, size_t max);

#endif
