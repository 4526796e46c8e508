#!/usr/bin/env python3
"""automation: an example modcore module written with modcore_sdk.

- Subscribes to device.* and counts device.state_changed events per device, keeping the
  counts in its storage (key "count.<device_id>"; in memory only if this core has no
  storage routes yet).
- Publishes automation.triggered {device_id, state, count, cause} whenever a device's new
  state has "on": true.
- GET /stats -> {"counts": {device_id: n}, "triggered": n, "storage": bool}.
- CLI: `stats [--device ID]` prints the counts; `reset [--device ID]` clears them.

The core delivers events at least once: the SDK answers a redelivery of an event it has
already handled without calling the handler again, and the handler itself counts an
event once even if publishing failed and the core delivers it again.
"""
import collections
import threading

from modcore_sdk import ApiError, Arg, Module

module = Module()
lock = threading.Lock()
counts = {}  # device_id -> state changes seen
counted = collections.OrderedDict()  # ids of events already counted (the last 1,000)
triggered = 0  # automation.triggered events published
storage_available = True  # False once the core showed it has no storage routes

PREFIX = "count."


def storage(call, *args):
    """Runs a storage call; returns None (and logs once) if this core cannot store."""
    global storage_available
    if not storage_available:
        return None
    try:
        return call(*args)
    except ApiError as error:
        if error.route_missing or error.status in (403, 404, 501):
            storage_available = False
            module.log.warning("storage not available (%s): counts are kept in memory only",
                               error)
            return None
        raise


@module.on_start
def load_counts():
    items = storage(lambda: list(module.api.storage.iterate(prefix=PREFIX)))
    for item in items or []:
        key, value = item.get("key", ""), item.get("value")
        if key.startswith(PREFIX) and isinstance(value, int):
            with lock:
                counts.setdefault(key[len(PREFIX):], value)
    if items is not None:
        module.log.info("loaded counts for %d devices from storage", len(counts))


@module.on_event("device.*")
def on_device_event(event):
    global triggered
    if event.type != "device.state_changed":
        module.log.info("%s %s", event.type, event.payload.get("device_id"))
        return
    device_id = event.payload.get("device_id")
    new_state = event.payload.get("new_state") or {}
    if not isinstance(device_id, str):
        return
    with lock:
        first_time = event.id not in counted
        if first_time:
            counts[device_id] = counts.get(device_id, 0) + 1
            counted[event.id] = True
            while len(counted) > 1000:
                counted.popitem(last=False)
        count = counts[device_id]
    if first_time:
        storage(module.api.storage.put, PREFIX + device_id, count)
    if new_state.get("on") is True:
        module.api.publish("automation.triggered", {
            "device_id": device_id, "state": new_state, "count": count, "cause": event.id})
        with lock:
            triggered += 1


@module.route("GET", "/stats")
def stats_route(request):
    with lock:
        return {"counts": dict(counts), "triggered": triggered, "storage": storage_available}


@module.cli_command("stats", about="Print the state changes counted per device", args=[
    Arg("device", short_name="d", help="only this device id")])
def stats(device=None):
    with lock:
        rows = sorted(counts.items()) if device is None else [(device, counts.get(device, 0))]
    if not rows:
        print("no state changes counted yet")
    for device_id, count in rows:
        print(f"{device_id}\t{count}")
    return 0


@module.cli_command("reset", about="Forget the counts (of one device, or all)", args=[
    Arg("device", short_name="d", help="only this device id")])
def reset(device=None):
    with lock:
        gone = [device] if device is not None else list(counts)
        for device_id in gone:
            counts.pop(device_id, None)
    if gone:
        storage(module.api.storage.batch, None, [PREFIX + d for d in gone])
    print(f"reset {len(gone)} device{'s' if len(gone) != 1 else ''}")
    return 0


if __name__ == "__main__":
    module.run()
