/*  modcore-launch: the first program of every module process.

    The sandbox actor writes the module's environment to <dir>/.env.module (0600) and
    starts this program in a new session. It reads that file, deletes it at once (the
    secrets then exist only in this process's memory and environment), replaces the
    whole environment with it, points stdout/stderr at the module's log, closes every
    other inherited descriptor, arranges to be killed if the core dies, and execs the
    module's entry point from the module's directory.

    usage: modcore-launch --env-file PATH --dir DIR --log PATH [--parent PID] -- ARGV...
    Exit status 127 (and a line in the log) if it cannot exec. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static void s_die (const char *what)
{
    fprintf (stderr, "modcore-launch: %s: %s\n", what, strerror (errno));
    _exit (127);
}

//  Replaces the environment with the KEY=VALUE lines of path, then deletes path.
static void s_load_env (const char *path)
{
    int fd = open (path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        s_die ("cannot open the environment file");
    static char buf[65536];
    ssize_t len = read (fd, buf, sizeof buf - 1);
    close (fd);
    unlink (path); // read once, then gone: the secrets are not left on disk
    if (len < 0)
        s_die ("cannot read the environment file");
    buf[len] = 0;
    clearenv ();
    for (char *line = strtok (buf, "\n"); line; line = strtok (NULL, "\n")) {
        char *eq = strchr (line, '=');
        if (!eq || eq == line)
            continue;
        *eq = 0;
        setenv (line, eq + 1, 1);
    }
    if (!getenv ("PATH"))
        setenv ("PATH", "/usr/local/bin:/usr/bin:/bin", 1);
}

int main (int argc, char **argv)
{
    const char *env_file = NULL, *dir = NULL, *log = NULL;
    pid_t parent = 0;
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp (argv[i], "--") == 0) {
            i++;
            break;
        }
        if (i + 1 >= argc)
            break;
        if (strcmp (argv[i], "--env-file") == 0)
            env_file = argv[++i];
        else if (strcmp (argv[i], "--dir") == 0)
            dir = argv[++i];
        else if (strcmp (argv[i], "--log") == 0)
            log = argv[++i];
        else if (strcmp (argv[i], "--parent") == 0)
            parent = (pid_t)atoi (argv[++i]);
        else
            break;
    }
    if (!env_file || !dir || !log || i >= argc) {
        fprintf (stderr, "usage: modcore-launch --env-file PATH --dir DIR --log PATH "
                         "[--parent PID] -- ARGV...\n");
        return 127;
    }
    //  Killed with the core: if the core is gone already, do not start at all.
    prctl (PR_SET_PDEATHSIG, SIGKILL);
    if (parent && getppid () != parent)
        return 127;

    int out = open (log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (out >= 0) {
        dup2 (out, STDOUT_FILENO);
        dup2 (out, STDERR_FILENO);
        close (out);
    }
    int in = open ("/dev/null", O_RDONLY | O_CLOEXEC);
    if (in >= 0) {
        dup2 (in, STDIN_FILENO);
        close (in);
    }
    //  Nothing of the core's (sockets, the store) leaks into the module.
    close_range (3, ~0u, 0);

    s_load_env (env_file);
    struct rlimit core = {0, 0};
    setrlimit (RLIMIT_CORE, &core);
    umask (027);
    if (chdir (dir) != 0)
        s_die ("cannot enter the module directory");
    execvp (argv[i], argv + i);
    fprintf (stderr, "modcore-launch: cannot run %s: %s\n", argv[i], strerror (errno));
    return 127;
}
