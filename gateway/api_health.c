/*  GET /api/v1/health: open to anyone, answered by the gateway alone. */
#include "gateway/http.h"

int mc_api_health (mc_http_req_t *req)
{
    uint64_t uptime = (mc_clock_mono_ns () - req->ctx->started_mono_ns) / 1000000000ull;
    return mc_http_json (req, 200,
                         json_pack ("{s:s, s:s, s:s, s:I, s:s}", "status", "ok", "version",
                                    MC_VERSION, "mode", "normal", "uptime", (json_int_t)uptime,
                                    "integrity", "not_configured"));
}
