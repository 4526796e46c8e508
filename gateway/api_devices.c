/*  /api/v1/devices: the Selena device registry, owned by the devices actor. */
#include <string.h>

#include "actors/devices.h"
#include "gateway/http.h"

//  Sends the device of a reply (status ok_status) or the reply's error.
static int s_answer (mc_http_req_t *req, mc_env_t *reply, int ok_status)
{
    int status;
    if (reply->status != MC__STATUS__STATUS_OK)
        status = mc_http_actor_error (req, reply);
    else if (ok_status == 204)
        status = mc_http_send (req, 204, NULL, "application/json", "", 0);
    else if (reply->body_case != MC__ENVELOPE__BODY_DEVICE_JSON ||
             reply->device_json->n_devices != 1)
        status = mc_http_error (req, 500, "INTERNAL", "unexpected answer from devices");
    else // the actor's compact JSON, sent as it is
        status =
            mc_http_send (req, ok_status, NULL, "application/json", reply->device_json->devices[0],
                          strlen (reply->device_json->devices[0]));
    mc_env_free (reply);
    return status;
}

//  Changes go to the devices actor, which answers once they are durable.
static int s_call (mc_http_req_t *req, mc_env_t *env, int ok_status)
{
    mc_env_t *reply =
        mc_http_call (req, req->thread->devices, env, (int)req->ctx->config->call_timeout_ms);
    return reply ? s_answer (req, reply, ok_status) : 504;
}

//  Reads are answered here, in the calling thread, from the view the actor published
//  after its last change (actors/devices.h): no hop.
static mc_devices_view_t *s_view (mc_http_req_t *req)
{
    mc_devices_view_t *view = mc_devices_view_acquire (req->ctx->devices_view);
    if (!view)
        mc_http_error (req, 503, "UNAVAILABLE", "the device registry is not loaded yet");
    return view;
}

int mc_api_devices_list (mc_http_req_t *req)
{
    mc_devices_view_t *view = s_view (req);
    if (!view)
        return 503;
    size_t len;
    const char *list = mc_devices_view_list (view, &len);
    int status = mc_http_send (req, 200, NULL, "application/json", list, len);
    mc_devices_view_release (&view);
    return status;
}

int mc_api_devices_get (mc_http_req_t *req)
{
    mc_devices_view_t *view = s_view (req);
    if (!view)
        return 503;
    size_t len = 0;
    const char *device = mc_devices_view_get (view, req->params[0], &len);
    int status = device
                     ? mc_http_send (req, 200, NULL, "application/json", device, len)
                     : mc_http_error (req, 404, "DEVICE_NOT_FOUND", "no device %s", req->params[0]);
    mc_devices_view_release (&view);
    return status;
}

int mc_api_devices_create (mc_http_req_t *req)
{
    json_t *body = mc_http_read_json (req);
    if (!body)
        return 400;
    const char *problem = mc_device_validate (body);
    if (problem) {
        json_decref (body);
        return mc_http_error (req, 422, "INVALID_DEVICE", "%s", problem);
    }
    char *json = json_dumps (body, JSON_COMPACT);
    json_decref (body);
    Mc__DeviceCreate create = MC__DEVICE_CREATE__INIT;
    create.module = req->principal.kind == MC_KIND_MODULE ? req->principal.name : "operator";
    create.json = json;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_DEVICE_CREATE;
    env.device_create = &create;
    int status = s_call (req, &env, 201);
    free (json);
    return status;
}

int mc_api_devices_state (mc_http_req_t *req)
{
    json_t *body = mc_http_read_json (req);
    if (!body)
        return 400;
    json_t *state = json_object_get (body, "state");
    if (!json_is_object (state)) {
        json_decref (body);
        return mc_http_error (req, 400, "INVALID_STATE", "body must be {\"state\": {...}}");
    }
    char *json = json_dumps (state, JSON_COMPACT);
    json_decref (body);
    Mc__DeviceSetState set = MC__DEVICE_SET_STATE__INIT;
    set.device_id = req->params[0];
    set.state_json = json;
    set.changed_by = req->principal.kind == MC_KIND_MODULE ? req->principal.name : "operator";
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_DEVICE_SET_STATE;
    env.device_set_state = &set;
    int status = s_call (req, &env, 200);
    free (json);
    return status;
}

//  Deleting devices is for DRIVER and SYSTEM modules (and the operator).
int mc_api_devices_delete (mc_http_req_t *req)
{
    if (req->principal.kind == MC_KIND_MODULE && !req->principal.system) {
        mc_env_t *own = mc_http_own_record (req);
        if (!own)
            return 400;
        bool driver = strcmp (own->module->type, "DRIVER") == 0;
        mc_env_free (own);
        if (!driver)
            return mc_http_error (req, 403, "FORBIDDEN",
                                  "Only DRIVER and SYSTEM modules may delete devices");
    }
    Mc__DeviceDelete del = MC__DEVICE_DELETE__INIT;
    del.device_id = req->params[0];
    del.deleted_by = req->principal.kind == MC_KIND_MODULE ? req->principal.name : "operator";
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_DEVICE_DELETE;
    env.device_delete = &del;
    return s_call (req, &env, 204);
}
