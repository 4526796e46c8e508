/*  Unit suite for the /proc process-tree fallback (core/cgroup.c): a module's
    descendants are found by walking down from its root, whatever else runs on the
    machine, and usage is summed over exactly that tree. */
#include "core/cgroup.h"
#include "testutil.h"

#include <CUnit/CUnit.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

//  A child that starts two grandchildren, one of which starts a great-grandchild, and
//  waits; returns the child's pid once the whole tree exists.
static pid_t s_spawn_tree (int ready[2])
{
    pid_t child = fork ();
    if (child == 0) {
        close (ready[0]);
        for (int i = 0; i < 2; i++)
            if (fork () == 0) {
                if (i == 1 && fork () == 0) {
                    if (write (ready[1], "g", 1) != 1)
                        _exit (1);
                    pause ();
                    _exit (0);
                }
                if (write (ready[1], "c", 1) != 1)
                    _exit (1);
                pause ();
                _exit (0);
            }
        pause ();
        _exit (0);
    }
    close (ready[1]);
    char buf[3];
    size_t got = 0;
    while (got < 3) {
        ssize_t n = read (ready[0], buf, 3 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close (ready[0]);
    CU_ASSERT_EQUAL (got, 3);
    return child;
}

static void test_tree (void)
{
    //  An unrelated process next to the tree: never part of it.
    pid_t other = fork ();
    if (other == 0) {
        pause ();
        _exit (0);
    }
    int ready[2];
    CU_ASSERT_FATAL (pipe (ready) == 0);
    pid_t root = s_spawn_tree (ready);
    pid_t pids[16];
    size_t n = mc_proc_tree_pids (root, pids, 16);
    CU_ASSERT_EQUAL (n, 3); // two grandchildren and a great-grandchild, not root itself
    for (size_t i = 0; i < n; i++) {
        CU_ASSERT_NOT_EQUAL (pids[i], root);
        CU_ASSERT_NOT_EQUAL (pids[i], other);
        CU_ASSERT_NOT_EQUAL (pids[i], getpid ());
    }
    CU_ASSERT_EQUAL (mc_proc_tree_pids (root, pids, 2), 2); // bounded by max
    mc_cgroup_stats_t stats;
    CU_ASSERT_EQUAL (mc_proc_tree_stats (root, &stats), 0);
    CU_ASSERT (stats.pids >= 4); // threads: at least one in each of the four (more under TSan)
    CU_ASSERT (stats.rss_bytes > 0);
    //  The whole tree, as the sandbox kills it; then root is gone.
    n = mc_proc_tree_pids (root, pids, 16);
    kill (root, SIGKILL);
    for (size_t i = 0; i < n; i++)
        kill (pids[i], SIGKILL);
    waitpid (root, NULL, 0);
    CU_ASSERT_EQUAL (mc_proc_tree_stats (root, &stats), -1);
    CU_ASSERT_EQUAL (mc_proc_tree_pids (root, pids, 16), 0);
    kill (other, SIGKILL);
    waitpid (other, NULL, 0);
}

void mc_test_proctree (void)
{
    CU_pSuite suite = CU_add_suite ("proctree", NULL, NULL);
    CU_add_test (suite, "a tree walked from its root", test_tree);
}
