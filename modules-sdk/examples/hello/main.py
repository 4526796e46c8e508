#!/usr/bin/env python3
"""hello: the example modcore module, written with modcore_sdk (standard library only).

Serves on 127.0.0.1:<port>:
  GET /health                                   {"status": "ok", "name", "version"} (SDK)
  GET /hello                                    {"message", "core_self"}
  GET /widget.html, /settings.html, /icon.svg   its UI files (SDK, from manifest.json)
At start it asks the core who it is (GET <core>/modules/self) in the background, so
/health answers at once. SIGTERM or SIGINT stops it cleanly.
"""
from modcore_sdk import ApiError, Module

module = Module()
core_self = None  # the core's record of this module, set once at start


@module.route("GET", "/hello")
def hello(request):
    return {"message": f"hello from {module.name}", "core_self": core_self}


@module.on_start
def ask_core_who_i_am():
    global core_self
    try:
        core_self = module.api.self()  # retried by the SDK on 429 and while the core starts
    except ApiError as error:
        module.log.warning("GET /modules/self: %s", error)
        return
    module.log.info("core knows me as %s (%s)", core_self.get("name"), core_self.get("status"))


if __name__ == "__main__":
    module.run()
