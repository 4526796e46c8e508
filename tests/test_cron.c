/*  core/cron: parsing the five fields and finding the next minute. */
#include <CUnit/CUnit.h>
#include <stdlib.h>
#include <time.h>

#include "core/cron.h"

static int64_t s_at (int y, int mo, int d, int h, int mi)
{
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_isdst = -1};
    return (int64_t)mktime (&tm);
}

static void test_parse (void)
{
    mc_cron_t c;
    char why[128];
    CU_ASSERT_EQUAL (mc_cron_parse ("*/15 * * * *", &c, why, sizeof why), 0);
    CU_ASSERT_EQUAL (c.minutes, (1ull << 0) | (1ull << 15) | (1ull << 30) | (1ull << 45));
    CU_ASSERT_EQUAL (mc_cron_parse ("0 9-17/2 * jan,JUL mon-fri", &c, why, sizeof why), 0);
    CU_ASSERT_EQUAL (c.hours, (1u << 9) | (1u << 11) | (1u << 13) | (1u << 15) | (1u << 17));
    CU_ASSERT_EQUAL (c.months, (1u << 1) | (1u << 7));
    CU_ASSERT_EQUAL (c.weekdays, 0x3e);
    CU_ASSERT_EQUAL (mc_cron_parse ("0 0 * * 7", &c, why, sizeof why), 0);
    CU_ASSERT_EQUAL (c.weekdays, 1);
    CU_ASSERT_EQUAL (mc_cron_parse ("@daily", &c, why, sizeof why), 0);
    CU_ASSERT_EQUAL (c.minutes, 1);
    CU_ASSERT_EQUAL (c.hours, 1);
    const char *bad[] = {"",          "* * * *",      "* * * * * *", "60 * * * *",  "* 24 * * *",
                         "* * 0 * *", "* * * 13 *",   "* * * * 8",   "*/0 * * * *", "5-1 * * * *",
                         "a * * * *", "1,,2 * * * *", "@often"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = 0;
        CU_ASSERT_EQUAL (mc_cron_parse (bad[i], &c, why, sizeof why), -1);
        CU_ASSERT (why[0] != 0);
    }
}

static void test_next (void)
{
    mc_cron_t c;
    char why[128];
    CU_ASSERT_EQUAL (mc_cron_parse ("*/15 * * * *", &c, why, sizeof why), 0);
    CU_ASSERT_EQUAL (mc_cron_next (&c, s_at (2026, 3, 10, 12, 7)), s_at (2026, 3, 10, 12, 15));
    CU_ASSERT_EQUAL (mc_cron_next (&c, s_at (2026, 3, 10, 12, 15)), s_at (2026, 3, 10, 12, 30));
    CU_ASSERT_EQUAL (mc_cron_next (&c, s_at (2026, 3, 10, 23, 50)), s_at (2026, 3, 11, 0, 0));
    CU_ASSERT_EQUAL (mc_cron_parse ("30 4 1 * mon", &c, why, sizeof why), 0);
    //  2026-03-10 is a Tuesday: the next Monday (16th) comes before April 1st.
    CU_ASSERT_EQUAL (mc_cron_next (&c, s_at (2026, 3, 10, 12, 0)), s_at (2026, 3, 16, 4, 30));
    CU_ASSERT_EQUAL (mc_cron_parse ("0 0 29 2 *", &c, why, sizeof why), 0);
    CU_ASSERT_EQUAL (mc_cron_next (&c, s_at (2026, 3, 1, 0, 0)), s_at (2028, 2, 29, 0, 0));
    CU_ASSERT_EQUAL (mc_cron_parse ("0 0 31 2 *", &c, why, sizeof why), 0);
    CU_ASSERT_EQUAL (mc_cron_next (&c, s_at (2026, 3, 1, 0, 0)), -1);
}

void mc_test_cron (void)
{
    CU_pSuite suite = CU_add_suite ("cron", NULL, NULL);
    CU_add_test (suite, "parse", test_parse);
    CU_add_test (suite, "next", test_next);
}
