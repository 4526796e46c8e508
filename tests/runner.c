/*  One CUnit runner for every unit suite. `mc_tests` runs them all;
    `mc_tests --suite NAME` runs one. The suite table comes from suites.h,
    generated from the test_*.c file names. */
#include <CUnit/Basic.h>
#include <czmq.h>
#include <stdio.h>
#include <string.h>

#define MC_SUITE(unit) void mc_test_##unit (void);
#include "suites.h"
#undef MC_SUITE

static const struct {
    const char *name;
    void (*add) (void);
} s_suites[] = {
#define MC_SUITE(unit) {#unit, mc_test_##unit},
#include "suites.h"
#undef MC_SUITE
};

int main (int argc, char **argv)
{
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv[i], "--suite") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp (argv[i], "--list") == 0) {
            for (size_t s = 0; s < sizeof s_suites / sizeof s_suites[0]; s++)
                printf ("%s\n", s_suites[s].name);
            return 0;
        } else {
            fprintf (stderr, "usage: mc_tests [--list] [--suite NAME]\n");
            return 2;
        }
    }
    zsys_init ();
    zsys_set_logstream (stderr);
    if (CU_initialize_registry () != CUE_SUCCESS)
        return 1;
    size_t added = 0;
    for (size_t s = 0; s < sizeof s_suites / sizeof s_suites[0]; s++)
        if (!only || strcmp (only, s_suites[s].name) == 0) {
            s_suites[s].add ();
            added++;
        }
    if (added == 0) {
        fprintf (stderr, "mc_tests: no suite named '%s'\n", only);
        CU_cleanup_registry ();
        return 2;
    }
    CU_basic_set_mode (CU_BRM_VERBOSE);
    CU_basic_run_tests ();
    unsigned failed = CU_get_number_of_failures () + CU_get_number_of_tests_failed ();
    unsigned run = CU_get_number_of_tests_run ();
    CU_cleanup_registry ();
    zsys_shutdown ();
    return (failed == 0 && run > 0) ? 0 : 1;
}
