"""The stand-in OptiPick API the tests run (optipick_standin.py): its key, and the results it serves."""

from optipick_standin import StandInApi

API_KEY = "test-api-key-" + "k" * 20
ROUTE_ID = "67d3f1a95e593173d0a1b2c4"  # the example route result
CLUSTER_ID = "67d3f2af5e593173d0a1b2d9"  # the example cluster result
UNKNOWN_ID = "0" * 24  # a request id the stand-in has no result for (until a test adds one)
# The console summary of the example route result (handlers/console.py).
ROUTE_SUMMARY = (
    f"route {ROUTE_ID} (Example, wave WAVE-2025-03-14-07): 6 picks, 1 invalid pick left out; "
    "no distance totals in the result"
)


def standin_api() -> StandInApi:
    """A stand-in API (not started yet) with API_KEY, serving one route result and one cluster result."""
    api = StandInApi(API_KEY)
    api.add_result("route", ROUTE_ID)
    api.add_result("cluster", CLUSTER_ID)
    return api
