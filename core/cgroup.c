#include "core/cgroup.h"

#include <assert.h>
#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CG_ROOT "/sys/fs/cgroup"

//  v1 controllers we use, in the order their directories are joined.
static const char *const s_v1_controllers[] = {"memory", "pids", "cpu", "cpuacct", NULL};

struct mc_cgroups_t {
    mc_cgroup_mode_t mode; // in use
    char instance[32];     // modcore-<hash>
    char base[4][4096];    // v1: <mount>/<own path>/<instance> per controller; v2: base[0]
    bool have[4];          // v1: controller usable
    char describe[256];    // for the log
};

//  snprintf that reports truncation at run time (returns false) instead of warnings.
static bool s_fmt (char *out, size_t size, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
static bool s_fmt (char *out, size_t size, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    int n = vsnprintf (out, size, fmt, args);
    va_end (args);
    return n >= 0 && (size_t)n < size;
}

static int s_write (const char *dir, const char *file, const char *text)
{
    char path[4200];
    snprintf (path, sizeof path, "%s/%s", dir, file);
    int fd = open (path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write (fd, text, strlen (text));
    int saved = errno;
    close (fd);
    errno = saved;
    return n == (ssize_t)strlen (text) ? 0 : -1;
}

//  Reads a small file into buf; returns its length or -1.
static ssize_t s_read (const char *dir, const char *file, char *buf, size_t size)
{
    char path[4200];
    snprintf (path, sizeof path, "%s/%s", dir, file);
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read (fd, buf, size - 1);
    close (fd);
    buf[n > 0 ? n : 0] = 0;
    return n;
}

static uint64_t s_read_u64 (const char *dir, const char *file)
{
    char buf[64];
    return s_read (dir, file, buf, sizeof buf) > 0 ? strtoull (buf, NULL, 10) : 0;
}

//  The value of "key N" in a flat-keyed file (memory.stat, cpu.stat, memory.events).
static uint64_t s_read_key (const char *dir, const char *file, const char *key)
{
    char buf[8192];
    if (s_read (dir, file, buf, sizeof buf) <= 0)
        return 0;
    size_t len = strlen (key);
    for (char *line = buf; line && *line;
         line = strchr (line, '\n') ? strchr (line, '\n') + 1 : NULL)
        if (strncmp (line, key, len) == 0 && line[len] == ' ')
            return strtoull (line + len + 1, NULL, 10);
    return 0;
}

//  The core's own path in the hierarchy that has controller (v1), or the unified one
//  (controller NULL), from /proc/self/cgroup.
static bool s_own_path (const char *controller, char *out, size_t size)
{
    FILE *file = fopen ("/proc/self/cgroup", "re");
    if (!file)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets (line, sizeof line, file)) {
        line[strcspn (line, "\n")] = 0;
        char *first = strchr (line, ':');
        char *second = first ? strchr (first + 1, ':') : NULL;
        if (!second)
            continue;
        *second = 0;
        const char *controllers = first + 1;
        if (!controller)
            found = *controllers == 0;
        else {
            char list[256];
            snprintf (list, sizeof list, "%s", controllers);
            for (char *c = strtok (list, ","); c && !found; c = strtok (NULL, ","))
                found = strcmp (c, controller) == 0;
        }
        if (found)
            snprintf (out, size, "%s", strcmp (second + 1, "/") == 0 ? "" : second + 1);
    }
    fclose (file);
    return found;
}

//  The mount point of the v1 hierarchy with controller, from /proc/self/mounts.
static bool s_v1_mount (const char *controller, char *out, size_t size)
{
    FILE *file = fopen ("/proc/self/mounts", "re");
    if (!file)
        return false;
    char dev[256], dir[4096], type[64], options[1024];
    bool found = false;
    while (!found &&
           fscanf (file, "%255s %4095s %63s %1023s %*d %*d", dev, dir, type, options) == 4) {
        if (strcmp (type, "cgroup") != 0)
            continue;
        for (char *o = strtok (options, ","); o && !found; o = strtok (NULL, ","))
            found = strcmp (o, controller) == 0;
        if (found)
            snprintf (out, size, "%s", dir);
    }
    fclose (file);
    return found;
}

static bool s_mkdir (const char *path)
{
    return mkdir (path, 0755) == 0 || errno == EEXIST;
}

static bool s_setup_v1 (mc_cgroups_t *self)
{
    int usable = 0;
    char list[128] = "";
    for (int i = 0; s_v1_controllers[i]; i++) {
        char mount[4096], own[2048];
        if (!s_v1_mount (s_v1_controllers[i], mount, sizeof mount) ||
            !s_own_path (s_v1_controllers[i], own, sizeof own))
            continue;
        s_fmt (self->base[i], sizeof self->base[i], "%s%s/%s", mount, own, self->instance);
        if (!s_mkdir (self->base[i]))
            continue;
        self->have[i] = true;
        usable++;
        snprintf (list + strlen (list), sizeof list - strlen (list), "%s%s", *list ? ", " : "",
                  s_v1_controllers[i]);
    }
    if (!usable)
        return false;
    snprintf (self->describe, sizeof self->describe, "v1 (%s)", list);
    return true;
}

//  v2 allows controllers for children only in a group without processes of its own,
//  so the core moves itself into a leaf <own>/modcored first when it has to.
static bool s_setup_v2 (mc_cgroups_t *self)
{
    char own[2048], dir[4096];
    if (!s_own_path (NULL, own, sizeof own))
        return false;
    snprintf (dir, sizeof dir, CG_ROOT "%s", own);
    if (s_write (dir, "cgroup.subtree_control", "+memory +pids +cpu") != 0 && *own) {
        char leaf[4200], pid[24];
        snprintf (leaf, sizeof leaf, "%s/modcored", dir);
        snprintf (pid, sizeof pid, "%d", (int)getpid ());
        if (!s_mkdir (leaf) || s_write (leaf, "cgroup.procs", pid) != 0 ||
            s_write (dir, "cgroup.subtree_control", "+memory +pids +cpu") != 0)
            return false;
    }
    s_fmt (self->base[0], sizeof self->base[0], "%s/%s", dir, self->instance);
    if (!s_mkdir (self->base[0]) ||
        s_write (self->base[0], "cgroup.subtree_control", "+memory +pids +cpu") != 0)
        return false;
    self->have[0] = true;
    s_fmt (self->describe, sizeof self->describe, "v2 (memory, pids, cpu) at %s", self->base[0]);
    return true;
}

mc_cgroups_t *mc_cgroups_new (const char *data_dir)
{
    mc_cgroups_t *self = calloc (1, sizeof *self);
    assert (self);
    uint64_t hash = 0xcbf29ce484222325ull; // FNV-1a of the data dir
    for (const char *c = data_dir; *c; c++)
        hash = (hash ^ (uint8_t)*c) * 0x100000001b3ull;
    snprintf (self->instance, sizeof self->instance, "modcore-%016llx", (unsigned long long)hash);
    char probe[256];
    if (s_read (CG_ROOT, "cgroup.controllers", probe, sizeof probe) >= 0)
        self->mode = s_setup_v2 (self) ? MC_CGROUP_V2 : MC_CGROUP_NONE;
    else
        self->mode = s_setup_v1 (self) ? MC_CGROUP_V1 : MC_CGROUP_NONE;
    if (self->mode == MC_CGROUP_NONE)
        snprintf (self->describe, sizeof self->describe,
                  "none (no writable cgroup hierarchy: limits by rlimits only)");
    return self;
}

void mc_cgroups_destroy (mc_cgroups_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free (*self_p);
    *self_p = NULL;
}

mc_cgroup_mode_t mc_cgroups_mode (const mc_cgroups_t *self)
{
    return self->mode;
}

const char *mc_cgroups_describe (const mc_cgroups_t *self)
{
    return self->describe;
}

//  The group directory of name for hierarchy i (v2: i = 0 only).
static bool s_group (const mc_cgroups_t *self, int i, const char *name, char *out, size_t size)
{
    if (!self->have[i])
        return false;
    return s_fmt (out, size, "%s/%s", self->base[i], name);
}

//  The directory listing the group's processes.
static bool s_procs_dir (const mc_cgroups_t *self, const char *name, char *out, size_t size)
{
    if (self->mode == MC_CGROUP_V2)
        return s_group (self, 0, name, out, size);
    for (int i = 0; s_v1_controllers[i]; i++)
        if (s_group (self, i, name, out, size))
            return true;
    return false;
}

int mc_cgroups_prepare (mc_cgroups_t *self, const char *name, const mc_cgroup_limits_t *limits,
                        char dirs[][4096], size_t max)
{
    if (self->mode == MC_CGROUP_NONE)
        return 0;
    size_t count = 0;
    char text[64];
    for (int i = 0; i < 4 && count < max; i++) {
        char dir[4096];
        if (!s_group (self, i, name, dir, sizeof dir))
            continue;
        if (!s_mkdir (dir)) {
            zsys_error ("sandbox: cannot create cgroup %s: %s", dir, strerror (errno));
            return -1;
        }
        const char *controller = self->mode == MC_CGROUP_V2 ? "all" : s_v1_controllers[i];
        bool all = self->mode == MC_CGROUP_V2;
        int rc = 0;
        if ((all || !strcmp (controller, "memory")) && limits->memory_bytes) {
            snprintf (text, sizeof text, "%llu", (unsigned long long)limits->memory_bytes);
            if (all) {
                rc |= s_write (dir, "memory.max", text);
                s_write (dir, "memory.swap.max", "0"); // absent without swap accounting
            } else {
                //  memsw >= memory always: lower memsw first when shrinking.
                s_write (dir, "memory.memsw.limit_in_bytes", "-1");
                rc |= s_write (dir, "memory.limit_in_bytes", text);
                s_write (dir, "memory.memsw.limit_in_bytes", text);
            }
        }
        if ((all || !strcmp (controller, "pids")) && limits->pids) {
            snprintf (text, sizeof text, "%u", limits->pids);
            rc |= s_write (dir, "pids.max", text);
        }
        if ((all || !strcmp (controller, "cpu")) && limits->cpu > 0) {
            long quota = (long)(limits->cpu * 100000.0);
            if (quota < 1000)
                quota = 1000;
            if (all) {
                snprintf (text, sizeof text, "%ld 100000", quota);
                rc |= s_write (dir, "cpu.max", text);
            } else {
                snprintf (text, sizeof text, "%ld", quota);
                rc |= s_write (dir, "cpu.cfs_period_us", "100000");
                rc |= s_write (dir, "cpu.cfs_quota_us", text);
            }
        }
        if (rc != 0) {
            zsys_error ("sandbox: cannot set the limits of cgroup %s: %s", dir, strerror (errno));
            return -1;
        }
        snprintf (dirs[count++], 4096, "%s", dir);
    }
    return (int)count;
}

//  Reads the pids of a group's cgroup.procs. Returns the count.
static size_t s_procs (const char *dir, pid_t *pids, size_t max)
{
    char path[4200];
    snprintf (path, sizeof path, "%s/cgroup.procs", dir);
    FILE *file = fopen (path, "re");
    if (!file)
        return 0;
    size_t count = 0;
    int pid;
    while (count < max && fscanf (file, "%d", &pid) == 1)
        pids[count++] = pid;
    fclose (file);
    return count;
}

int mc_cgroups_signal (mc_cgroups_t *self, const char *name, int sig, pid_t skip)
{
    char dir[4096];
    if (!s_procs_dir (self, name, dir, sizeof dir))
        return 0;
    pid_t pids[1024];
    size_t n = s_procs (dir, pids, 1024);
    int count = 0;
    for (size_t i = 0; i < n; i++)
        if (pids[i] != skip && kill (pids[i], sig) == 0)
            count++;
    return count;
}

//  Kills everything in the group at dir and removes it. Returns processes killed, or -1
//  if the group could not be removed.
static int s_remove_dir (const char *dir, bool v2)
{
    int killed = 0;
    if (v2)
        s_write (dir, "cgroup.kill", "1"); // Linux 5.14+: the whole group at once
    for (int round = 0; round < 200; round++) {
        pid_t pids[1024];
        size_t n = s_procs (dir, pids, 1024);
        for (size_t i = 0; i < n; i++)
            if (kill (pids[i], SIGKILL) == 0)
                killed++;
        if (rmdir (dir) == 0 || errno == ENOENT)
            return killed;
        usleep (5000);
    }
    return -1;
}

int mc_cgroups_remove (mc_cgroups_t *self, const char *name)
{
    int rc = 0;
    for (int i = 0; i < 4; i++) {
        char dir[4096];
        if (s_group (self, i, name, dir, sizeof dir) &&
            s_remove_dir (dir, self->mode == MC_CGROUP_V2) < 0)
            rc = -1;
    }
    return rc;
}

int mc_cgroups_cleanup (mc_cgroups_t *self)
{
    int killed = 0;
    for (int i = 0; i < 4; i++) {
        if (!self->have[i])
            continue;
        DIR *dir = opendir (self->base[i]);
        struct dirent *e;
        while (dir && (e = readdir (dir))) {
            if (e->d_type != DT_DIR || e->d_name[0] == '.')
                continue;
            char path[4400];
            snprintf (path, sizeof path, "%s/%s", self->base[i], e->d_name);
            int n = s_remove_dir (path, self->mode == MC_CGROUP_V2);
            killed += n > 0 ? n : 0;
        }
        if (dir)
            closedir (dir);
    }
    return killed;
}

int mc_cgroups_release (mc_cgroups_t *self)
{
    int rc = 0;
    for (int i = 0; i < 4; i++)
        if (self->have[i] && rmdir (self->base[i]) != 0 && errno != ENOENT)
            rc = -1;
    return rc;
}

int mc_cgroups_stats (mc_cgroups_t *self, const char *name, mc_cgroup_stats_t *stats)
{
    memset (stats, 0, sizeof *stats);
    char dir[4096];
    if (self->mode == MC_CGROUP_V2) {
        if (!s_group (self, 0, name, dir, sizeof dir) || access (dir, F_OK) != 0)
            return -1;
        stats->cpu_ns = s_read_key (dir, "cpu.stat", "usage_usec") * 1000;
        stats->rss_bytes = s_read_key (dir, "memory.stat", "anon");
        stats->pids = (uint32_t)s_read_u64 (dir, "pids.current");
        stats->oom_kills = s_read_key (dir, "memory.events", "oom_kill");
        return 0;
    }
    if (self->mode == MC_CGROUP_NONE)
        return -1;
    bool any = false;
    if (s_group (self, 0, name, dir, sizeof dir) && access (dir, F_OK) == 0) {
        stats->rss_bytes = s_read_key (dir, "memory.stat", "total_rss");
        stats->oom_kills = s_read_key (dir, "memory.oom_control", "oom_kill");
        any = true;
    }
    if (s_group (self, 1, name, dir, sizeof dir) && access (dir, F_OK) == 0) {
        stats->pids = (uint32_t)s_read_u64 (dir, "pids.current");
        any = true;
    }
    if (s_group (self, 3, name, dir, sizeof dir) && access (dir, F_OK) == 0) {
        stats->cpu_ns = s_read_u64 (dir, "cpuacct.usage");
        any = true;
    }
    return any ? 0 : -1;
}

//  --- /proc fallback -------------------------------------------------------------------
//
//  A process tree is walked down from its root through /proc/<pid>/task/<tid>/children
//  (each thread's children), so its cost is the size of the tree, not the number of
//  processes on the machine: a scan of every /proc/<pid>/stat with a quadratic match of
//  parents made each module start and stop cost more with every installed module.

typedef struct {
    uint64_t ticks; // utime + stime
    uint64_t rss_pages;
    uint32_t threads;
} s_proc_t;

//  Reads a process's CPU ticks, RSS and threads. Returns false if it is gone.
static bool s_read_proc (pid_t pid, s_proc_t *p)
{
    char path[64], buf[1024];
    s_fmt (path, sizeof path, "/proc/%d", (int)pid);
    if (s_read (path, "stat", buf, sizeof buf) <= 0)
        return false;
    char *close_paren = strrchr (buf, ')'); // the command may contain spaces
    unsigned long long utime = 0, stime = 0, threads = 0, rss = 0;
    //  fields after ")": state ppid ... utime(14) stime(15) ... num_threads(20) ... rss(24)
    if (!close_paren ||
        sscanf (close_paren + 2,
                "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %llu "
                "%*d %*u %*u %llu",
                &utime, &stime, &threads, &rss) != 4)
        return false;
    *p = (s_proc_t){utime + stime, rss, (uint32_t)threads};
    return true;
}

//  Root and its descendants, root first, at most max. 0 if root does not exist.
static size_t s_tree (pid_t root, pid_t *out, size_t max)
{
    char path[64];
    s_fmt (path, sizeof path, "/proc/%d", (int)root);
    if (max == 0 || access (path, F_OK) != 0)
        return 0;
    size_t n = 0;
    out[n++] = root;
    for (size_t i = 0; i < n && n < max; i++) {
        s_fmt (path, sizeof path, "/proc/%d/task", (int)out[i]);
        DIR *dir = opendir (path);
        struct dirent *e;
        while (dir && n < max && (e = readdir (dir))) {
            if (e->d_name[0] < '1' || e->d_name[0] > '9')
                continue;
            char task[96], buf[4096];
            s_fmt (task, sizeof task, "%s/%s", path, e->d_name);
            ssize_t len = s_read (task, "children", buf, sizeof buf);
            for (char *p = buf, *end; len > 0 && n < max; p = end) {
                long pid = strtol (p, &end, 10);
                if (end == p)
                    break;
                out[n++] = (pid_t)pid;
            }
        }
        if (dir)
            closedir (dir);
    }
    return n;
}

int mc_proc_tree_stats (pid_t root, mc_cgroup_stats_t *stats)
{
    memset (stats, 0, sizeof *stats);
    size_t max = 8192;
    pid_t *pids = calloc (max, sizeof *pids);
    assert (pids);
    size_t n = s_tree (root, pids, max);
    long tick = sysconf (_SC_CLK_TCK), page = sysconf (_SC_PAGESIZE);
    for (size_t i = 0; i < n; i++) {
        s_proc_t p;
        if (!s_read_proc (pids[i], &p))
            continue;
        stats->cpu_ns += p.ticks * (1000000000ull / (uint64_t)(tick > 0 ? tick : 100));
        stats->rss_bytes += p.rss_pages * (uint64_t)page;
        stats->pids += p.threads;
    }
    free (pids);
    return n > 0 ? 0 : -1;
}

size_t mc_proc_tree_pids (pid_t root, pid_t *pids, size_t max)
{
    size_t cap = max + 1;
    pid_t *tree = calloc (cap, sizeof *tree);
    assert (tree);
    size_t n = s_tree (root, tree, cap);
    size_t count = n > 0 ? n - 1 : 0;
    if (count)
        memcpy (pids, tree + 1, count * sizeof *pids);
    free (tree);
    return count;
}
