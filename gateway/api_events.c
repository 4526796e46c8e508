/*  /api/v1/events: publish, subscribe, unsubscribe, list subscriptions, recent events
    (operator), deliveries and their retry. A module sees only its own subscriptions
    and deliveries; the admin token (and SYSTEM modules) see all. */
#include <string.h>

#include "core/fsutil.h"
#include "core/perms.h"
#include "gateway/http.h"

//  True for the operator and SYSTEM modules: they see every module's data.
static bool s_sees_all (mc_http_req_t *req)
{
    return req->principal.kind == MC_KIND_ADMIN || req->principal.system;
}

bool mc_http_query (mc_http_req_t *req, const char *name, char *buf, size_t size)
{
    const char *query = req->info->query_string;
    return query && mg_get_var (query, strlen (query), name, buf, size) >= 0;
}

mc_env_t *mc_http_own_record (mc_http_req_t *req)
{
    if (req->principal.kind != MC_KIND_MODULE) {
        mc_http_error (req, 400, "NOT_A_MODULE", "only a module token can do this");
        return NULL;
    }
    Mc__RegistryGet get = MC__REGISTRY_GET__INIT;
    get.name = req->principal.name;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_REGISTRY_GET;
    env.registry_get = &get;
    return mc_http_ask (req, req->thread->registry, &env, MC__ENVELOPE__BODY_MODULE);
}

int mc_api_events_publish (mc_http_req_t *req)
{
    json_t *body = mc_http_read_json (req);
    if (!body)
        return 400;
    json_t *type = json_object_get (body, "type");
    json_t *payload = json_object_get (body, "payload");
    if (!json_is_string (type) || (payload && !json_is_object (payload))) {
        json_decref (body);
        return mc_http_error (req, 400, "INVALID_EVENT",
                              "body must be {\"type\": string, \"payload\": object}");
    }
    char *payload_json = payload ? json_dumps (payload, JSON_COMPACT) : strdup ("{}");
    Mc__EventPublish pub = MC__EVENT_PUBLISH__INIT;
    pub.type = (char *)json_string_value (type);
    pub.source = req->principal.kind == MC_KIND_MODULE ? req->principal.name : "operator";
    pub.payload_json = payload_json;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_EVENT_PUBLISH;
    env.event_publish = &pub;
    mc_env_t *reply =
        mc_http_ask (req, req->thread->eventbus, &env, MC__ENVELOPE__BODY_EVENT_PUBLISHED);
    free (payload_json);
    json_decref (body);
    if (!reply)
        return mc_http_status (req);
    int status = mc_http_json (
        req, 201,
        json_pack ("{s:s, s:s, s:s}", "event_id", reply->event_published->event_id, "type",
                   reply->event_published->type, "timestamp", reply->event_published->timestamp));
    mc_env_free (reply);
    return status;
}

static json_t *s_subscription_json (const Mc__Subscription *sub)
{
    json_t *types = json_array ();
    for (size_t i = 0; i < sub->n_event_types; i++)
        json_array_append_new (types, json_string (sub->event_types[i]));
    char created[32];
    mc_time_iso (sub->created_at, created, sizeof created);
    return json_pack ("{s:s, s:s, s:o, s:s, s:s}", "subscription_id", sub->id, "module",
                      sub->module, "event_types", types, "webhook_url", sub->webhook_url,
                      "created_at", created);
}

int mc_api_events_subscribe (mc_http_req_t *req)
{
    json_t *body = mc_http_read_json (req);
    if (!body)
        return 400;
    json_t *types = json_object_get (body, "event_types");
    json_t *url = json_object_get (body, "webhook_url");
    size_t n = json_array_size (types);
    bool ok = json_is_array (types) && n > 0 && n <= 32 && json_is_string (url);
    for (size_t i = 0; ok && i < n; i++)
        ok = json_is_string (json_array_get (types, i));
    if (!ok) {
        json_decref (body);
        return mc_http_error (req, 400, "INVALID_SUBSCRIPTION",
                              "body must be {\"event_types\": [1..32 strings], \"webhook_url\": "
                              "string}");
    }
    mc_env_t *own = mc_http_own_record (req);
    if (!own) {
        json_decref (body);
        return 400;
    }
    char *patterns[32];
    for (size_t i = 0; i < n; i++)
        patterns[i] = (char *)json_string_value (json_array_get (types, i));
    Mc__EventSubscribe sub = MC__EVENT_SUBSCRIBE__INIT;
    sub.module = req->principal.name;
    sub.n_event_types = n;
    sub.event_types = patterns;
    sub.webhook_url = (char *)json_string_value (url);
    sub.module_port = own->module->port;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_EVENT_SUBSCRIBE;
    env.event_subscribe = &sub;
    mc_env_t *reply =
        mc_http_ask (req, req->thread->eventbus, &env, MC__ENVELOPE__BODY_EVENT_SUBSCRIPTIONS);
    mc_env_free (own);
    json_decref (body);
    if (!reply)
        return mc_http_status (req);
    if (reply->event_subscriptions->n_subscriptions != 1) {
        mc_env_free (reply);
        return mc_http_error (req, 500, "INTERNAL", "unexpected answer from the core");
    }
    int status =
        mc_http_json (req, 201, s_subscription_json (reply->event_subscriptions->subscriptions[0]));
    mc_env_free (reply);
    return status;
}

int mc_api_events_unsubscribe (mc_http_req_t *req)
{
    Mc__EventUnsubscribe unsub = MC__EVENT_UNSUBSCRIBE__INIT;
    unsub.subscription_id = req->params[0];
    unsub.module = s_sees_all (req) ? "" : req->principal.name;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_EVENT_UNSUBSCRIBE;
    env.event_unsubscribe = &unsub;
    mc_env_t *reply = mc_http_ask (req, req->thread->eventbus, &env, MC__ENVELOPE__BODY__NOT_SET);
    if (!reply)
        return mc_http_status (req);
    mc_env_free (reply);
    return mc_http_send (req, 204, NULL, "application/json", "", 0);
}

int mc_api_events_subscriptions (mc_http_req_t *req)
{
    Mc__EventSubscriptions query = MC__EVENT_SUBSCRIPTIONS__INIT;
    char module[96] = "";
    if (s_sees_all (req))
        mc_http_query (req, "module", module, sizeof module);
    else
        snprintf (module, sizeof module, "%s", req->principal.name);
    query.module = module;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_EVENT_SUBSCRIPTIONS;
    env.event_subscriptions = &query;
    mc_env_t *reply =
        mc_http_ask (req, req->thread->eventbus, &env, MC__ENVELOPE__BODY_EVENT_SUBSCRIPTIONS);
    if (!reply)
        return mc_http_status (req);
    json_t *list = json_array ();
    for (size_t i = 0; i < reply->event_subscriptions->n_subscriptions; i++)
        json_array_append_new (list,
                               s_subscription_json (reply->event_subscriptions->subscriptions[i]));
    int status = mc_http_json (req, 200, json_pack ("{s:o}", "subscriptions", list));
    mc_env_free (reply);
    return status;
}

int mc_api_events_recent (mc_http_req_t *req)
{
    char after[24] = "0", limit[12] = "100";
    mc_http_query (req, "after", after, sizeof after);
    mc_http_query (req, "limit", limit, sizeof limit);
    Mc__EventRecent recent = MC__EVENT_RECENT__INIT;
    recent.after_seq = strtoull (after, NULL, 10);
    recent.limit = (uint32_t)strtoul (limit, NULL, 10);
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_EVENT_RECENT;
    env.event_recent = &recent;
    mc_env_t *reply = mc_http_ask (req, req->thread->eventbus, &env, MC__ENVELOPE__BODY_EVENT_LIST);
    if (!reply)
        return mc_http_status (req);
    json_t *events = json_array ();
    for (size_t i = 0; i < reply->event_list->n_events; i++) {
        Mc__Event *ev = reply->event_list->events[i];
        json_t *event = json_loadb ((const char *)ev->json.data, ev->json.len, 0, NULL);
        if (event) {
            json_object_set_new (event, "seq", json_integer ((json_int_t)ev->seq));
            json_array_append_new (events, event);
        }
    }
    int status = mc_http_json (req, 200, json_pack ("{s:o}", "events", events));
    mc_env_free (reply);
    return status;
}

static const char *s_delivery_status (Mc__DeliveryStatus status)
{
    switch (status) {
        case MC__DELIVERY_STATUS__DELIVERY_PENDING:
            return "pending";
        case MC__DELIVERY_STATUS__DELIVERY_DELIVERED:
            return "delivered";
        case MC__DELIVERY_STATUS__DELIVERY_DEAD:
            return "dead";
        case _MC__DELIVERY_STATUS_IS_INT_SIZE:
            break;
    }
    return "unknown";
}

static json_t *s_delivery_json (const Mc__Delivery *d)
{
    char created[40], updated[40], next[40];
    mc_time_iso_ms (d->created_ms, created, sizeof created);
    mc_time_iso_ms (d->updated_ms, updated, sizeof updated);
    mc_time_iso_ms (d->next_attempt_ms, next, sizeof next);
    return json_pack ("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:i, s:s, s:s, s:s?}",
                      "delivery_id", d->id, "event_id", d->event_id, "event_type", d->event_type,
                      "subscription_id", d->subscription_id, "module", d->module, "url", d->url,
                      "status", s_delivery_status (d->status), "attempts", (int)d->attempts,
                      "last_error", d->last_error, "last_status_code", (int)d->last_status_code,
                      "created_at", created, "updated_at", updated, "next_attempt_at",
                      d->status == MC__DELIVERY_STATUS__DELIVERY_PENDING ? next : NULL);
}

int mc_api_events_deliveries (mc_http_req_t *req)
{
    Mc__WebhookList query = MC__WEBHOOK_LIST__INIT;
    char module[96] = "", status_text[16] = "", limit[12] = "100";
    if (s_sees_all (req))
        mc_http_query (req, "module", module, sizeof module);
    else
        snprintf (module, sizeof module, "%s", req->principal.name);
    if (mc_http_query (req, "status", status_text, sizeof status_text)) {
        query.filter_status = true;
        if (strcmp (status_text, "pending") == 0)
            query.status = MC__DELIVERY_STATUS__DELIVERY_PENDING;
        else if (strcmp (status_text, "delivered") == 0)
            query.status = MC__DELIVERY_STATUS__DELIVERY_DELIVERED;
        else if (strcmp (status_text, "dead") == 0 || strcmp (status_text, "failed") == 0)
            query.status = MC__DELIVERY_STATUS__DELIVERY_DEAD;
        else
            return mc_http_error (req, 400, "INVALID_STATUS",
                                  "status must be pending, delivered or dead");
    }
    mc_http_query (req, "limit", limit, sizeof limit);
    query.module = module;
    query.limit = (uint32_t)strtoul (limit, NULL, 10);
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_WEBHOOK_LIST;
    env.webhook_list = &query;
    mc_env_t *reply =
        mc_http_ask (req, req->thread->webhook, &env, MC__ENVELOPE__BODY_DELIVERY_LIST);
    if (!reply)
        return mc_http_status (req);
    json_t *list = json_array ();
    for (size_t i = 0; i < reply->delivery_list->n_deliveries; i++)
        json_array_append_new (list, s_delivery_json (reply->delivery_list->deliveries[i]));
    int status = mc_http_json (req, 200, json_pack ("{s:o}", "deliveries", list));
    mc_env_free (reply);
    return status;
}

int mc_api_events_retry (mc_http_req_t *req)
{
    Mc__WebhookRetry retry = MC__WEBHOOK_RETRY__INIT;
    retry.delivery_id = req->params[0];
    retry.module = s_sees_all (req) ? "" : req->principal.name;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_WEBHOOK_RETRY;
    env.webhook_retry = &retry;
    mc_env_t *reply = mc_http_ask (req, req->thread->webhook, &env, MC__ENVELOPE__BODY_DELIVERY);
    if (!reply)
        return mc_http_status (req);
    int status = mc_http_json (req, 200, s_delivery_json (reply->delivery));
    mc_env_free (reply);
    return status;
}
