/*  Unit suite for published values (core/snapshot) and the devices view built on them:
    references outlive a replacement, every published value is freed exactly once even
    with readers racing a writer, and the devices actor publishes before it answers, so
    a client reads its own write without asking the actor. */
#include "actors/devices.h"
#include "core/actor.h"
#include "core/context.h"
#include "core/snapshot.h"
#include "testutil.h"

#include <CUnit/CUnit.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CALL_TIMEOUT_MS 10000
#define READERS         4
#define PUBLISHES       20000
#define MAGIC           0x5eed5eedu

//  A published test value: b is always 2 * a; magic is cleared when it is freed.
typedef struct {
    mc_shared_t shared;
    uint32_t magic;
    uint64_t a, b;
} s_value_t;

static atomic_uint s_destroyed;

static void s_value_destroy (mc_shared_t *shared)
{
    s_value_t *value = (s_value_t *)shared;
    CU_ASSERT_EQUAL (value->magic, MAGIC); // never freed twice
    value->magic = 0;
    atomic_fetch_add (&s_destroyed, 1);
    free (value);
}

static mc_shared_t *s_value_new (uint64_t a)
{
    s_value_t *value = calloc (1, sizeof *value);
    mc_shared_init (&value->shared, s_value_destroy);
    value->magic = MAGIC;
    value->a = a;
    value->b = 2 * a;
    return &value->shared;
}

static void test_slot_basics (void)
{
    atomic_store (&s_destroyed, 0);
    mc_slot_t *slot = mc_slot_new ();
    CU_ASSERT_PTR_NULL (mc_slot_acquire (slot));
    mc_slot_publish (slot, s_value_new (1));
    s_value_t *held = (s_value_t *)mc_slot_acquire (slot);
    CU_ASSERT_FATAL (held && held->a == 1);
    //  A replacement does not free the value a reader holds...
    mc_slot_publish (slot, s_value_new (2));
    CU_ASSERT_EQUAL (atomic_load (&s_destroyed), 0);
    CU_ASSERT_EQUAL (held->magic, MAGIC);
    s_value_t *now = (s_value_t *)mc_slot_acquire (slot);
    CU_ASSERT_FATAL (now && now->a == 2);
    //  ...its last reference does.
    mc_shared_release (&held->shared);
    CU_ASSERT_EQUAL (atomic_load (&s_destroyed), 1);
    mc_shared_release (&now->shared);
    CU_ASSERT_EQUAL (atomic_load (&s_destroyed), 1); // the slot still holds 2
    mc_slot_publish (slot, NULL);
    CU_ASSERT_EQUAL (atomic_load (&s_destroyed), 2);
    CU_ASSERT_PTR_NULL (mc_slot_acquire (slot));
    mc_slot_publish (slot, s_value_new (3));
    mc_slot_destroy (&slot);
    CU_ASSERT_PTR_NULL (slot);
    CU_ASSERT_EQUAL (atomic_load (&s_destroyed), 3);
    mc_slot_destroy (&slot); // safe on NULL
    mc_shared_release (NULL);
}

typedef struct {
    mc_slot_t *slot;
    atomic_bool done;
    atomic_uint bad, reads;
} s_race_t;

static void *s_reader (void *arg)
{
    s_race_t *race = arg;
    uint64_t last = 0;
    while (!atomic_load (&race->done)) {
        s_value_t *value = (s_value_t *)mc_slot_acquire (race->slot);
        if (!value)
            continue;
        //  Intact, consistent, and never older than what this reader saw before.
        if (value->magic != MAGIC || value->b != 2 * value->a || value->a < last)
            atomic_fetch_add (&race->bad, 1);
        last = value->a;
        atomic_fetch_add (&race->reads, 1);
        mc_shared_release (&value->shared);
    }
    return NULL;
}

static void test_slot_race (void)
{
    atomic_store (&s_destroyed, 0);
    s_race_t race = {.slot = mc_slot_new ()};
    pthread_t readers[READERS];
    for (int i = 0; i < READERS; i++)
        CU_ASSERT_EQUAL_FATAL (pthread_create (&readers[i], NULL, s_reader, &race), 0);
    for (uint64_t i = 1; i <= PUBLISHES; i++)
        mc_slot_publish (race.slot, s_value_new (i));
    atomic_store (&race.done, true);
    for (int i = 0; i < READERS; i++)
        pthread_join (readers[i], NULL);
    CU_ASSERT_EQUAL (atomic_load (&race.bad), 0);
    CU_ASSERT (atomic_load (&race.reads) > 0);
    CU_ASSERT_EQUAL (atomic_load (&s_destroyed), PUBLISHES - 1);
    mc_slot_destroy (&race.slot);
    CU_ASSERT_EQUAL (atomic_load (&s_destroyed), PUBLISHES);
}

//  --- the devices view, through the real devices actor -----------------------------

typedef struct {
    char *dir;
    mc_config_t *config;
    mc_test_actor_t run; // while the actor runs
} s_devices_t;

static void s_devices_start (s_devices_t *self)
{
    self->run.ctx.devices_view = mc_slot_new ();
    mc_test_actor_start (&self->run, self->dir, "devices", mc_devices_actor);
}

static void s_devices_stop (s_devices_t *self)
{
    mc_test_actor_stop (&self->run);
    mc_slot_destroy (&self->run.ctx.devices_view);
}

//  Creates a device named name; returns its id (caller frees).
static char *s_create (s_devices_t *self, const char *name)
{
    char json[128];
    snprintf (json, sizeof json, "{\"name\":\"%s\",\"type\":\"sensor\"}", name);
    Mc__DeviceCreate create = MC__DEVICE_CREATE__INIT;
    create.module = "mod-a";
    create.json = json;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_DEVICE_CREATE;
    env.device_create = &create;
    mc_env_t *reply = mc_call (self->run.client, &env, CALL_TIMEOUT_MS);
    CU_ASSERT_FATAL (reply && reply->status == MC__STATUS__STATUS_OK &&
                     reply->body_case == MC__ENVELOPE__BODY_DEVICE_JSON);
    json_t *device = json_loads (reply->device_json->devices[0], 0, NULL);
    char *id = strdup (json_string_value (json_object_get (device, "device_id")));
    json_decref (device);
    mc_env_free (reply);
    return id;
}

//  The published device id as a JSON object (NULL if absent).
static json_t *s_view_device (s_devices_t *self, const char *id)
{
    mc_devices_view_t *view = mc_devices_view_acquire (self->run.ctx.devices_view);
    CU_ASSERT_PTR_NOT_NULL_FATAL (view);
    size_t len = 0;
    const char *text = mc_devices_view_get (view, id, &len);
    json_t *device = text ? json_loadb (text, len, 0, NULL) : NULL;
    mc_devices_view_release (&view);
    return device;
}

static void test_devices_view (void)
{
    s_devices_t f = {0};
    f.dir = mc_test_tmpdir ("devview");
    f.config = mc_config_new ();
    f.run.ctx.config = f.config;
    s_devices_start (&f);
    //  Published at start, empty.
    mc_devices_view_t *empty = mc_devices_view_acquire (f.run.ctx.devices_view);
    CU_ASSERT_PTR_NOT_NULL_FATAL (empty);
    size_t len = 0;
    CU_ASSERT_STRING_EQUAL (mc_devices_view_list (empty, &len), "{\"devices\":[]}");
    CU_ASSERT_EQUAL (len, strlen ("{\"devices\":[]}"));
    //  Every answered create is in the view at once (read your own write).
    char *ids[20];
    for (int i = 0; i < 20; i++) {
        char name[16];
        snprintf (name, sizeof name, "dev-%02d", i);
        ids[i] = s_create (&f, name);
        json_t *device = s_view_device (&f, ids[i]);
        CU_ASSERT (device &&
                   strcmp (json_string_value (json_object_get (device, "name")), name) == 0);
        json_decref (device);
    }
    CU_ASSERT_EQUAL (mc_devices_view_count (empty), 0); // an old view never changes
    CU_ASSERT_PTR_NULL (mc_devices_view_get (empty, ids[0], &len));
    //  The list is every device, sorted by id, valid JSON.
    mc_devices_view_t *before = mc_devices_view_acquire (f.run.ctx.devices_view);
    json_t *list = json_loads (mc_devices_view_list (before, &len), JSON_REJECT_DUPLICATES, NULL);
    json_t *devices = json_object_get (list, "devices");
    CU_ASSERT_EQUAL_FATAL (json_array_size (devices), 20);
    for (size_t i = 1; i < 20; i++)
        CU_ASSERT (strcmp (json_string_value (
                               json_object_get (json_array_get (devices, i - 1), "device_id")),
                           json_string_value (
                               json_object_get (json_array_get (devices, i), "device_id"))) < 0);
    json_decref (list);
    //  A state change and a delete are published before they are answered.
    Mc__DeviceSetState set = MC__DEVICE_SET_STATE__INIT;
    set.device_id = ids[3];
    set.state_json = "{\"on\":true}";
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_DEVICE_SET_STATE;
    env.device_set_state = &set;
    mc_env_t *reply = mc_call (f.run.client, &env, CALL_TIMEOUT_MS);
    CU_ASSERT_FATAL (reply && reply->status == MC__STATUS__STATUS_OK);
    mc_env_free (reply);
    json_t *device = s_view_device (&f, ids[3]);
    CU_ASSERT (json_is_true (json_object_get (json_object_get (device, "state"), "on")));
    json_decref (device);
    Mc__DeviceDelete del = MC__DEVICE_DELETE__INIT;
    del.device_id = ids[5];
    env.body_case = MC__ENVELOPE__BODY_DEVICE_DELETE;
    env.device_delete = &del;
    reply = mc_call (f.run.client, &env, CALL_TIMEOUT_MS);
    CU_ASSERT_FATAL (reply && reply->status == MC__STATUS__STATUS_OK);
    mc_env_free (reply);
    CU_ASSERT_PTR_NULL (s_view_device (&f, ids[5]));
    //  The view taken before keeps what it had.
    CU_ASSERT_EQUAL (mc_devices_view_count (before), 20);
    CU_ASSERT_PTR_NOT_NULL (mc_devices_view_get (before, ids[5], &len));
    mc_devices_view_release (&before);
    mc_devices_view_release (&empty);
    CU_ASSERT_PTR_NULL (empty);
    //  After a restart the view is rebuilt from the store.
    s_devices_stop (&f);
    s_devices_start (&f);
    mc_devices_view_t *view = mc_devices_view_acquire (f.run.ctx.devices_view);
    CU_ASSERT_EQUAL (mc_devices_view_count (view), 19);
    mc_devices_view_release (&view);
    device = s_view_device (&f, ids[3]);
    CU_ASSERT (json_is_true (json_object_get (json_object_get (device, "state"), "on")));
    json_decref (device);
    s_devices_stop (&f);
    for (int i = 0; i < 20; i++)
        free (ids[i]);
    mc_config_destroy (&f.config);
    mc_test_rmtree (f.dir);
    free (f.dir);
}

void mc_test_snapshot (void)
{
    CU_pSuite suite = CU_add_suite ("snapshot", NULL, NULL);
    CU_add_test (suite, "slot basics", test_slot_basics);
    CU_add_test (suite, "readers race a writer", test_slot_race);
    CU_add_test (suite, "devices view", test_devices_view);
}
