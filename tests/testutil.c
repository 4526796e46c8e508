#include "testutil.h"

#include "core/actor.h"

#include <CUnit/CUnit.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *mc_test_tmpdir (const char *tag)
{
    const char *base = getenv ("TMPDIR");
    char path[4096];
    snprintf (path, sizeof path, "%s/mc-test-%s-XXXXXX", base ? base : "/tmp", tag);
    if (!mkdtemp (path))
        return NULL;
    return strdup (path);
}

static int s_rm (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove (path);
}

void mc_test_rmtree (const char *path)
{
    if (path)
        nftw (path, s_rm, 32, FTW_DEPTH | FTW_PHYS);
}

int mc_test_write_file (const char *path, const void *data, size_t len)
{
    FILE *f = fopen (path, "wb");
    if (!f)
        return -1;
    size_t n = fwrite (data, 1, len, f);
    return (fclose (f) == 0 && n == len) ? 0 : -1;
}

bool mc_test_exists (const char *path)
{
    struct stat st;
    return lstat (path, &st) == 0;
}

int mc_test_count_entries (const char *dir)
{
    DIR *d = opendir (dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir (d)))
        if (strcmp (e->d_name, ".") && strcmp (e->d_name, ".."))
            n++;
    closedir (d);
    return n;
}

mc_store_t *mc_test_store_open (const char *dir)
{
    mc_error_t err = {0};
    char path[4400];
    snprintf (path, sizeof path, "%s/db", dir);
    mc_store_t *store = mc_store_open (path, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL (store);
    return store;
}

void mc_test_actor_start (mc_test_actor_t *self, const char *dir, const char *name, zactor_fn *fn)
{
    self->ctx.store = mc_test_store_open (dir);
    self->actor = mc_actor_start (name, fn, &self->ctx);
    CU_ASSERT_PTR_NOT_NULL_FATAL (self->actor);
    self->client = mc_client_new (name);
}

void mc_test_actor_stop (mc_test_actor_t *self)
{
    zsock_destroy (&self->client);
    zactor_destroy (&self->actor);
    mc_store_close (&self->ctx.store);
}
