/*  sensor: an example modcore module in C (libmodcore, native transport).

    At start it finds its device -- the id it remembered in its storage (key
    "device_id"), else a device named sensor-1 it registered before, else it registers
    one (POST /devices) -- so a restart reuses the same device. Then every 2 s it
    updates the device's state {"temperature": ...} (PATCH /devices/{id}/state), which
    makes the core publish device.state_changed. It serves GET /health on its port (the
    SDK does) and a CLI subcommand: `modctl sensor status`. */
#include <math.h>
#include <modcore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEVICE_NAME "sensor-1"
#define PERIOD_MS   2000

typedef struct {
    char device_id[128]; // our device in the core's registry
    double temperature;  // last value sent
    unsigned seed;       // for the noise
    unsigned ticks;      // updates sent
} sensor_t;

//  True (and the id copied) if reply is a device that exists.
static bool s_device_id (const mc_reply_t *reply, char *id, size_t size)
{
    json_t *value = mc_reply_ok (reply) ? json_object_get (reply->json, "device_id") : NULL;
    if (!json_is_string (value))
        return false;
    snprintf (id, size, "%s", json_string_value (value));
    return true;
}

//  Finds or registers sensor-1. Returns 0 or -1.
static int s_find_device (mc_module_t *module, sensor_t *self)
{
    //  1. the id we stored
    mc_reply_t *reply = mc_module_storage_get (module, "device_id");
    json_t *stored = mc_reply_ok (reply) ? json_object_get (reply->json, "value") : NULL;
    if (json_is_string (stored)) {
        mc_reply_t *device = mc_module_device_get (module, json_string_value (stored));
        bool found = s_device_id (device, self->device_id, sizeof self->device_id);
        mc_reply_destroy (&device);
        mc_reply_destroy (&reply);
        if (found) {
            fprintf (stderr, "sensor: reusing device %s\n", self->device_id);
            return 0;
        }
    } else if (reply->status != 404)
        fprintf (stderr, "sensor: storage unavailable (%d %s); looking the device up\n",
                 reply->status, reply->error);
    mc_reply_destroy (&reply);

    //  2. a sensor-1 this module registered before (storage lost or not available)
    bool found = false;
    reply = mc_module_devices_list (module);
    size_t i;
    json_t *device;
    json_array_foreach (json_object_get (reply->json, "devices"), i, device)
    {
        json_t *name = json_object_get (device, "name");
        json_t *owner = json_object_get (device, "module_id");
        if (!found && json_is_string (name) &&
            strcmp (json_string_value (name), DEVICE_NAME) == 0 && json_is_string (owner) &&
            strcmp (json_string_value (owner), mc_module_name (module)) == 0) {
            snprintf (self->device_id, sizeof self->device_id, "%s",
                      json_string_value (json_object_get (device, "device_id")));
            found = true;
        }
    }
    mc_reply_destroy (&reply);

    //  3. register it
    if (!found) {
        json_t *spec = json_pack ("{s:s, s:s, s:s, s:[s]}", "name", DEVICE_NAME, "type", "sensor",
                                  "protocol", "virtual", "capabilities", "temperature");
        reply = mc_module_device_create (module, spec);
        json_decref (spec);
        found = s_device_id (reply, self->device_id, sizeof self->device_id);
        if (!found)
            fprintf (stderr, "sensor: cannot register %s: %d %s %s\n", DEVICE_NAME, reply->status,
                     reply->error, reply->detail);
        else
            fprintf (stderr, "sensor: registered device %s\n", self->device_id);
        mc_reply_destroy (&reply);
        if (!found)
            return -1;
    }
    json_t *value = json_string (self->device_id);
    reply = mc_module_storage_put (module, "device_id", value);
    if (!mc_reply_ok (reply))
        fprintf (stderr, "sensor: cannot remember the device id: %d %s\n", reply->status,
                 reply->error);
    mc_reply_destroy (&reply);
    json_decref (value);
    return 0;
}

//  Every 2 s: a new simulated temperature.
static void s_tick (mc_module_t *module, void *arg)
{
    sensor_t *self = arg;
    self->ticks++;
    double noise = ((double)rand_r (&self->seed) / RAND_MAX - 0.5) * 0.4;
    double value = 21.0 + 3.0 * sin ((double)self->ticks / 10.0) + noise;
    self->temperature = round (value * 10.0) / 10.0;
    json_t *state = json_pack ("{s:f}", "temperature", self->temperature);
    mc_reply_t *reply = mc_module_device_set_state (module, self->device_id, state);
    if (!mc_reply_ok (reply))
        fprintf (stderr, "sensor: state update failed: %d %s %s\n", reply->status, reply->error,
                 reply->detail);
    mc_reply_destroy (&reply);
    json_decref (state);
}

//  modctl sensor status
static int s_status (mc_module_t *module, json_t *args, mc_output_t *out, mc_output_t *err,
                     void *arg)
{
    sensor_t *self = arg;
    mc_output_printf (out, "device %s: %.1f C after %u updates\n", self->device_id,
                      self->temperature, self->ticks);
    return 0;
}

int main (void)
{
    sensor_t sensor = {.seed = (unsigned)time (NULL) ^ (unsigned)getpid ()};
    mc_module_t *module = mc_module_new_from_env ();
    mc_module_set_transport (module, MC_TRANSPORT_NATIVE);
    mc_module_cli_add (module, "status", "Show the device and its last temperature", NULL, s_status,
                       &sensor);
    int rc = mc_module_start (module);
    if (rc == 0)
        rc = s_find_device (module, &sensor);
    if (rc == 0) {
        s_tick (module, &sensor);
        mc_module_every (module, PERIOD_MS, s_tick, &sensor);
        rc = mc_module_run (module);
    }
    mc_module_destroy (&module);
    return rc == 0 ? 0 : 1;
}
