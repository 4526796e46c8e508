"""modcore_sdk: write a modcore (SelenaCore-compatible) module in Python, standard
library only.

    from modcore_sdk import Module, Arg

    module = Module()                      # token, secret, port, core URL: from the env

    @module.on_event("device.*")           # subscribed at start, signature checked
    def on_device(event):
        module.log.info("%s %s", event.type, event.payload)

    @module.route("GET", "/hello")         # the module's own HTTP routes
    def hello(request):
        return {"message": "hello"}

    @module.cli_command("greet", about="Say hello", args=[Arg("name", required=True)])
    def greet(name):
        print(f"hello {name}")            # becomes the command's stdout

    module.run()                           # serves, subscribes, blocks until SIGTERM

module.api is the core's API: events, devices, config, storage, secrets, self().
"""

__version__ = "0.1.0"

from .cli import Arg, Command  # noqa: E402
from .client import ApiClient, ApiError  # noqa: E402
from .module import Event, Module, content_type  # noqa: E402
from .patterns import match, pattern_valid, type_valid  # noqa: E402
from .server import HttpError, Request, Response  # noqa: E402
from .signing import (sign_selena, sign_standard, verify_request, verify_selena,  # noqa: E402
                      verify_standard)

match_pattern = match

__all__ = [
    "Module", "Event", "Arg", "Command", "ApiClient", "ApiError", "Request", "Response",
    "HttpError", "match", "match_pattern", "pattern_valid", "type_valid", "sign_selena",
    "verify_selena", "sign_standard", "verify_standard", "verify_request", "content_type",
    "__version__",
]
