"""A Cluster with more tables appended to dispatcher.toml ([[webhook]], ...),
and a bounded HTTP request to its dispatcher's HTTP port (http.client: no
third-party client)."""

import http.client

from kiln_cluster import Cluster

HTTP_TIMEOUT = 10.0  # one request


class HttpCluster(Cluster):
    def __init__(self, testcase=None, tables="", **kwargs):
        super().__init__(testcase, **kwargs)
        self.tables = tables  # TOML tables appended to dispatcher.toml

    def write_dispatcher_config(self, extra=None):
        path = super().write_dispatcher_config(extra)
        with open(path, "a") as f:
            f.write(self.tables)
        return path

    def http(self, method, path, body=b"", headers=None):
        """(status, headers dict with lower-case names, body bytes)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port(), timeout=HTTP_TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return (resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()
