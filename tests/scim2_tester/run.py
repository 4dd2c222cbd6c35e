"""Run scim2-tester (the python-scim project's RFC 7643/7644 checker) against a running scimgate.

usage: run.py BASE_URL TOKEN CA_FILE

Every check it generates from our /Schemas must pass. Prints each non-passing check, then a
closing 'N passed, N failed' line; exits non-zero if any check failed.
"""

import json
import ssl
import sys

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

PASSING = {Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE}

# draft-abbey-scim-agent-extension-00 §4.1: a server supporting agents MUST advertise it with a
# top-level `agentExtension` in its ServiceProviderConfig. scim2-models forbids attributes RFC 7643
# §5 does not define (and stops every later check when the ServiceProviderConfig fails), so this
# transport checks that one attribute here and hands scim2-tester the rest.
AGENT_EXTENSION = {"supported": True, "agentsSupported": True, "agenticApplicationsSupported": False}


class AgentExtensionChecked(httpx2.HTTPTransport):
    seen = None

    def handle_request(self, request):
        resp = super().handle_request(request)
        if not request.url.path.endswith("/ServiceProviderConfig") or resp.status_code != 200:
            return resp
        resp.read()
        body = json.loads(resp.content)
        AgentExtensionChecked.seen = body.pop("agentExtension", None)
        headers = {k: v for k, v in resp.headers.items() if k.lower() not in ("content-length", "content-encoding")}
        return httpx2.Response(resp.status_code, headers=headers, content=json.dumps(body).encode())


def main() -> int:
    base, token, ca = sys.argv[1:4]
    ctx = ssl.create_default_context(cafile=ca)
    http = httpx2.Client(
        base_url=base,
        headers={"Authorization": f"Bearer {token}"},
        transport=AgentExtensionChecked(verify=ctx),
        timeout=30,
    )
    client = SyncSCIMClient(http)
    results = check_server(client)
    passed = failed = skipped = 0
    for r in results:
        if r.status in PASSING:
            passed += 1
        elif r.status == Status.SKIPPED:
            skipped += 1
            print(f"SKIPPED  [{r.resource_type or '-'}] {r.title}: {r.reason}")
        else:
            failed += 1
            print(f"{r.status.name:8} [{r.resource_type or '-'}] {r.title}: {r.reason}")
            if r.data is not None:
                print(f"         data: {str(r.data)[:600]}")
    if AgentExtensionChecked.seen != AGENT_EXTENSION:
        failed += 1
        print(f"ERROR    [-] agentExtension (draft-abbey-scim-agent-extension-00 §4.1): {AgentExtensionChecked.seen!r}")
    print(f"scim2-tester: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
