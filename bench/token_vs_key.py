"""GET users/me/ with an identity-provider token against the same with an API key, interleaved.

    .venv/bin/python bench/token_vs_key.py [--rounds 3] [--duration 10] [--connections 16]

One gunicorn as in production (bench/run.py's service, 5 sync workers), one real OpenID
provider on a loopback port (the tests' oidc-provider-mock) as the generic issuer, and wrk
alternating key, token, key, token... so that both see the same machine load. The token counts
at the enterprise tier, as the seeded key does. Prints each run, the mean req/s of each, and how
often the service fetched the provider's keys (once per worker at most, never per request).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import RESULTS, Server, free_port, manage, resolve_database, seed, service_env, wrk
from tests.oidc_provider import OIDC_CLIENT_ID, MockProvider, provider_env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()

    RESULTS.mkdir(parents=True, exist_ok=True)
    database_url = resolve_database("agent_platform_bench_tokens")
    port = free_port()
    env = service_env(database_url, port, 5)
    manage(env, "migrate", "--noinput", "-v", "0")
    data = seed(database_url, 10)
    provider = MockProvider().start()
    env.update(provider_env(generic=provider), OIDC_RATE_LIMIT_TIER="enterprise", LOG_LEVEL="warning")
    token = provider.id_token("bench", {"email": "bench-token@example.com"}, client_id=OIDC_CLIENT_ID)
    server = Server(env, port, RESULTS / "gunicorn-token-vs-key.log")
    url = f"http://127.0.0.1:{port}/api/v1/users/me/"
    credentials = {"API key": str(data["key"]), "token": token}
    rps: dict[str, list[float]] = {name: [] for name in credentials}
    try:
        for credential in credentials.values():
            wrk("warm", url, connections=args.connections, duration=2, key=credential)
        for n in range(args.rounds):
            for name, credential in credentials.items():
                result = wrk(name, url, connections=args.connections, duration=args.duration, key=credential)
                rps[name].append(result.rps)
                print(
                    f"round {n} {name:8s} {result.rps:8.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                    f"p99 {result.p99_ms:7.2f} ms  errors {result.errors}",
                    flush=True,
                )
    finally:
        server.stop()
        provider.stop()
    key_mean, token_mean = statistics.mean(rps["API key"]), statistics.mean(rps["token"])
    print(f"mean req/s: API key {key_mean:.0f}, token {token_mean:.0f} (token/key {token_mean / key_mean:.2f})")
    print(f"provider key-set fetches: {provider.hits['/jwks']} (5 workers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
