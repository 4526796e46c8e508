/*  devices actor

    DESIGN. Owns every device: dev/<device_id> in the store holds the device's JSON,
    {device_id, name, type, protocol, state, capabilities, last_seen, module_id, meta},
    and the same is kept in memory. Every change is written with sync before it is
    acknowledged, then announced as a core event (device.registered,
    device.state_changed {device_id, old_state, new_state, changed_by},
    device.removed), which the bus queues durably like any other.

    Reads are not messages: after every change, before it answers, the actor publishes
    an immutable view (core/snapshot.h) that the gateway and the native transport read
    in their own threads: each device's compact JSON text, sorted by id, shared between
    successive views (a change renders one text and copies the array of pointers; the
    list body is rendered once per view, by its first reader). */
#include "actors/devices.h"

#include <pthread.h>
#include <string.h>

#include "core/actor.h"
#include "core/context.h"
#include "core/fsutil.h"
#include "core/token.h"
#include "envelope_cases.h"

#define MAX_DEVICES 100000

//  One device's JSON as published: immutable, shared by every view that holds it.
typedef struct {
    mc_shared_t shared; // first: the reference count
    size_t len;         // of text
    char id[40];        // device_id
    char text[];        // compact JSON
} device_text_t;

struct mc_devices_view_t {
    mc_shared_t shared;     // first: the reference count
    pthread_mutex_t lock;   // guards list while it is rendered
    char *list;             // {"devices":[...]}, or NULL until first asked for
    size_t list_len;        // its length
    size_t count;           // devices
    device_text_t *items[]; // sorted by id, one reference each
};

typedef struct {
    mc_context_t *ctx;      // shared context
    zsock_t *router;        // inproc://modcore.devices
    zsock_t *eventbus;      // DEALER: device events
    zhashx_t *devices;      // id -> json_t * (owned)
    device_text_t **items;  // the published texts, sorted by id (one reference each)
    size_t count, capacity; // of items
} self_t;

//  --- the published view ------------------------------------------------------------

static void s_text_destroy (mc_shared_t *shared)
{
    free (shared);
}

static void s_view_destroy (mc_shared_t *shared)
{
    mc_devices_view_t *view = (mc_devices_view_t *)shared;
    for (size_t i = 0; i < view->count; i++)
        mc_shared_release (&view->items[i]->shared);
    pthread_mutex_destroy (&view->lock);
    free (view->list);
    free (view);
}

//  Index of id in a sorted array of n texts, or where it would go (*found false).
static size_t s_search (device_text_t *const *items, size_t n, const char *id, bool *found)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = strcmp (items[mid]->id, id);
        if (cmp == 0) {
            *found = true;
            return mid;
        }
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

mc_devices_view_t *mc_devices_view_acquire (mc_slot_t *slot)
{
    return (mc_devices_view_t *)mc_slot_acquire (slot);
}

void mc_devices_view_release (mc_devices_view_t **self_p)
{
    if (*self_p)
        mc_shared_release (&(*self_p)->shared);
    *self_p = NULL;
}

const char *mc_devices_view_list (mc_devices_view_t *self, size_t *len)
{
    pthread_mutex_lock (&self->lock);
    if (!self->list) {
        static const char head[] = "{\"devices\":[", tail[] = "]}";
        size_t total = sizeof head - 1 + sizeof tail;
        for (size_t i = 0; i < self->count; i++)
            total += self->items[i]->len + 1;
        char *list = malloc (total), *at = list;
        assert (list);
        at = memcpy (at, head, sizeof head - 1) + (sizeof head - 1);
        for (size_t i = 0; i < self->count; i++) {
            if (i > 0)
                *at++ = ',';
            at = memcpy (at, self->items[i]->text, self->items[i]->len) + self->items[i]->len;
        }
        at = memcpy (at, tail, sizeof tail - 1) + (sizeof tail - 1);
        *at = 0;
        self->list_len = (size_t)(at - list);
        self->list = list;
    }
    pthread_mutex_unlock (&self->lock);
    *len = self->list_len;
    return self->list;
}

const char *mc_devices_view_get (mc_devices_view_t *self, const char *id, size_t *len)
{
    bool found;
    size_t at = s_search (self->items, self->count, id, &found);
    if (!found)
        return NULL;
    *len = self->items[at]->len;
    return self->items[at]->text;
}

size_t mc_devices_view_count (mc_devices_view_t *self)
{
    return self->count;
}

//  Publishes the current texts as a new view (before the change is acknowledged).
static void s_publish (self_t *self)
{
    mc_devices_view_t *view = calloc (1, sizeof *view + self->count * sizeof view->items[0]);
    assert (view);
    mc_shared_init (&view->shared, s_view_destroy);
    pthread_mutex_init (&view->lock, NULL);
    view->count = self->count;
    for (size_t i = 0; i < self->count; i++)
        view->items[i] = (device_text_t *)mc_shared_ref (&self->items[i]->shared);
    mc_slot_publish (self->ctx->devices_view, &view->shared);
}

//  A device's published text, rendered once from its JSON: the same bytes are stored,
//  published and sent in the reply.
static device_text_t *s_text_new (const char *id, json_t *device)
{
    char *json = json_dumps (device, JSON_COMPACT);
    assert (json);
    size_t len = strlen (json);
    device_text_t *text = malloc (sizeof *text + len + 1);
    assert (text);
    mc_shared_init (&text->shared, s_text_destroy);
    text->len = len;
    snprintf (text->id, sizeof text->id, "%s", id);
    memcpy (text->text, json, len + 1);
    free (json);
    return text;
}

//  Adds or replaces a device's text among the published ones (the reference is taken).
static void s_text_put (self_t *self, device_text_t *text)
{
    bool found;
    size_t at = s_search (self->items, self->count, text->id, &found);
    if (found) {
        mc_shared_release (&self->items[at]->shared);
        self->items[at] = text;
        return;
    }
    if (self->count == self->capacity) {
        self->capacity = self->capacity ? self->capacity * 2 : 64;
        self->items = realloc (self->items, self->capacity * sizeof *self->items);
        assert (self->items);
    }
    memmove (self->items + at + 1, self->items + at, (self->count - at) * sizeof *self->items);
    self->items[at] = text;
    self->count++;
}

static void s_text_remove (self_t *self, const char *id)
{
    bool found;
    size_t at = s_search (self->items, self->count, id, &found);
    if (!found)
        return;
    mc_shared_release (&self->items[at]->shared);
    memmove (self->items + at, self->items + at + 1, (self->count - at - 1) * sizeof *self->items);
    self->count--;
}

//  --- requests --------------------------------------------------------------------------

const char *mc_device_validate (json_t *body)
{
    static const char *const types[] = {"sensor", "actuator", "controller", "virtual"};
    json_t *name = json_object_get (body, "name");
    json_t *type = json_object_get (body, "type");
    json_t *protocol = json_object_get (body, "protocol");
    json_t *caps = json_object_get (body, "capabilities");
    json_t *meta = json_object_get (body, "meta");
    if (!json_is_string (name) || json_string_length (name) == 0 || json_string_length (name) > 128)
        return "name must be a string of 1..128 characters";
    bool known = false;
    for (size_t i = 0; json_is_string (type) && i < 4; i++)
        known = known || strcmp (json_string_value (type), types[i]) == 0;
    if (!known)
        return "type must be one of sensor, actuator, controller, virtual";
    if (protocol && (!json_is_string (protocol) || json_string_length (protocol) > 64))
        return "protocol must be a string of at most 64 characters";
    if (caps && (!json_is_array (caps) || json_array_size (caps) > 64))
        return "capabilities must be an array of at most 64 strings";
    for (size_t i = 0; caps && i < json_array_size (caps); i++) {
        json_t *c = json_array_get (caps, i);
        if (!json_is_string (c) || json_string_length (c) == 0 || json_string_length (c) > 64)
            return "capabilities must be an array of at most 64 strings";
    }
    if (meta && !json_is_object (meta))
        return "meta must be an object";
    return NULL;
}

static void s_json_free (void **item)
{
    json_decref (*item);
    *item = NULL;
}

static int s_save (self_t *self, const device_text_t *text)
{
    char key[64];
    snprintf (key, sizeof key, "dev/%s", text->id);
    return mc_store_put (self->ctx->store, key, text->text, text->len, true);
}

//  Replies with one device's JSON text.
static void s_reply_device (self_t *self, mc_request_t *req, const device_text_t *text)
{
    char *texts[] = {(char *)text->text};
    Mc__DeviceJson body = MC__DEVICE_JSON__INIT;
    body.n_devices = 1;
    body.devices = texts;
    mc_env_t reply = MC__ENVELOPE__INIT;
    reply.body_case = MC__ENVELOPE__BODY_DEVICE_JSON;
    reply.device_json = &body;
    mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
}

static void s_not_found (self_t *self, mc_request_t *req, const char *id)
{
    mc_reply_error (self->router, req->routing_id, req->env->request_id,
                    MC__STATUS__STATUS_NOT_FOUND, "DEVICE_NOT_FOUND", "no device %s", id ? id : "");
}

static void s_create (self_t *self, mc_request_t *req)
{
    Mc__DeviceCreate *create = req->env->device_create;
    json_t *body = json_loads (create->json ? create->json : "", JSON_REJECT_DUPLICATES, NULL);
    const char *problem = body ? mc_device_validate (body) : "body must be a JSON object";
    if (problem || zhashx_size (self->devices) >= MAX_DEVICES) {
        mc_reply_error (self->router, req->routing_id, req->env->request_id,
                        problem ? MC__STATUS__STATUS_INVALID : MC__STATUS__STATUS_CONFLICT,
                        problem ? "INVALID_DEVICE" : "TOO_MANY_DEVICES", "%s",
                        problem ? problem : "the device registry is full");
        json_decref (body);
        return;
    }
    char id[37], seen[32];
    mc_uuid_generate (id);
    mc_time_iso (mc_time_unix (), seen, sizeof seen);
    json_t *caps = json_object_get (body, "capabilities");
    json_t *meta = json_object_get (body, "meta");
    json_t *protocol = json_object_get (body, "protocol");
    json_t *device =
        json_pack ("{s:s, s:O, s:O, s:s, s:{}, s:O, s:s, s:s, s:O}", "device_id", id, "name",
                   json_object_get (body, "name"), "type", json_object_get (body, "type"),
                   "protocol", protocol ? json_string_value (protocol) : "virtual", "state",
                   "capabilities", caps ? caps : json_array (), "last_seen", seen, "module_id",
                   create->module && *create->module ? create->module : "operator", "meta",
                   meta ? meta : json_object ());
    if (!caps)
        json_decref (json_object_get (device, "capabilities")); // the packed O took a ref
    if (!meta)
        json_decref (json_object_get (device, "meta"));
    json_decref (body);
    device_text_t *text = s_text_new (id, device);
    if (s_save (self, text) != 0) {
        mc_reply_error (self->router, req->routing_id, req->env->request_id,
                        MC__STATUS__STATUS_INTERNAL, "STORE_FAILED", "cannot store the device");
        mc_shared_release (&text->shared);
        json_decref (device);
        return;
    }
    zhashx_insert (self->devices, id, device);
    s_text_put (self, text);
    s_publish (self);
    s_reply_device (self, req, text);
    mc_publish_core_event (self->eventbus, "device.registered",
                           json_pack ("{s:s, s:O}", "device_id", id, "device", device));
}

static void s_set_state (self_t *self, mc_request_t *req)
{
    Mc__DeviceSetState *set = req->env->device_set_state;
    json_t *device = set->device_id ? zhashx_lookup (self->devices, set->device_id) : NULL;
    if (!device) {
        s_not_found (self, req, set->device_id);
        return;
    }
    json_t *state =
        json_loads (set->state_json ? set->state_json : "", JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object (state)) {
        json_decref (state);
        mc_reply_error (self->router, req->routing_id, req->env->request_id,
                        MC__STATUS__STATUS_BAD_REQUEST, "INVALID_STATE",
                        "state must be a JSON object");
        return;
    }
    json_t *old_state = json_incref (json_object_get (device, "state"));
    json_t *updated = json_deep_copy (device);
    char seen[32];
    mc_time_iso (mc_time_unix (), seen, sizeof seen);
    json_object_set (updated, "state", state);
    json_object_set_new (updated, "last_seen", json_string (seen));
    device_text_t *text = s_text_new (set->device_id, updated);
    if (s_save (self, text) != 0) {
        mc_reply_error (self->router, req->routing_id, req->env->request_id,
                        MC__STATUS__STATUS_INTERNAL, "STORE_FAILED", "cannot store the device");
        mc_shared_release (&text->shared);
        json_decref (updated);
    } else {
        zhashx_update (self->devices, set->device_id, updated);
        s_text_put (self, text);
        s_publish (self);
        s_reply_device (self, req, text);
        mc_publish_core_event (
            self->eventbus, "device.state_changed",
            json_pack ("{s:s, s:O, s:O, s:s}", "device_id", set->device_id, "old_state", old_state,
                       "new_state", state, "changed_by",
                       set->changed_by && *set->changed_by ? set->changed_by : "core"));
    }
    json_decref (old_state);
    json_decref (state);
}

static void s_delete (self_t *self, mc_request_t *req)
{
    const char *id = req->env->device_delete->device_id;
    if (!id || !zhashx_lookup (self->devices, id)) {
        s_not_found (self, req, id);
        return;
    }
    char key[64];
    snprintf (key, sizeof key, "dev/%s", id);
    if (mc_store_delete (self->ctx->store, key, true) != 0) {
        mc_reply_error (self->router, req->routing_id, req->env->request_id,
                        MC__STATUS__STATUS_INTERNAL, "STORE_FAILED", "cannot delete the device");
        return;
    }
    char *copy = strdup (id);
    zhashx_delete (self->devices, id);
    s_text_remove (self, copy);
    s_publish (self);
    mc_env_t reply = MC__ENVELOPE__INIT;
    mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
    const char *by = req->env->device_delete->deleted_by;
    mc_publish_core_event (
        self->eventbus, "device.removed",
        json_pack ("{s:s, s:s}", "device_id", copy, "removed_by", by && *by ? by : "core"));
    free (copy);
}

static void s_on_request (self_t *self)
{
    mc_request_t *req = mc_request_recv (self->router);
    if (!req)
        return;
    switch (req->env->body_case) {
        case MC__ENVELOPE__BODY_DEVICE_CREATE:
            s_create (self, req);
            break;
        case MC__ENVELOPE__BODY_DEVICE_SET_STATE:
            s_set_state (self, req);
            break;
        case MC__ENVELOPE__BODY_DEVICE_DELETE:
            s_delete (self, req);
            break;
            MC_CASES_NOT_FOR_DEVICES
            mc_reply_error (self->router, req->routing_id, req->env->request_id,
                            MC__STATUS__STATUS_BAD_REQUEST, "UNSUPPORTED",
                            "devices does not handle this message");
            break;
    }
    mc_request_destroy (&req);
}

static void s_on_request_cb (void *self)
{
    s_on_request (self);
}

static int s_load_one (const char *key, size_t klen, const void *value, size_t vlen, void *arg)
{
    self_t *self = arg;
    json_t *device = json_loadb (value, vlen, 0, NULL);
    const char *id = json_string_value (json_object_get (device, "device_id"));
    if (!device || !id || strcmp (id, key + 4) != 0) {
        zsys_warning ("devices: skipped an unreadable record %s", key);
        json_decref (device);
        return 0;
    }
    zhashx_insert (self->devices, id, device);
    s_text_put (self, s_text_new (id, device));
    return 0;
}

void mc_devices_actor (zsock_t *pipe, void *args)
{
    self_t *self = calloc (1, sizeof *self);
    assert (self);
    self->ctx = args;
    self->router = mc_actor_bind ("devices");
    self->eventbus = mc_client_new ("eventbus");
    self->devices = zhashx_new ();
    zhashx_set_destructor (self->devices, s_json_free);
    bool ok = self->router && self->eventbus &&
              mc_store_scan (self->ctx->store, "dev/", s_load_one, self) == 0;
    if (ok)
        s_publish (self);
    if (mc_actor_ready (pipe, ok ? 0 : -1) == 0) {
        zsys_info ("devices: %zu devices loaded", zhashx_size (self->devices));
        mc_actor_serve (pipe, self->router, s_on_request_cb, self);
    }
    zhashx_destroy (&self->devices);
    for (size_t i = 0; i < self->count; i++)
        mc_shared_release (&self->items[i]->shared);
    free (self->items);
    zsock_destroy (&self->router);
    zsock_destroy (&self->eventbus);
    free (self);
}
