"""unittest glue for the Cluster: a TestCase that prints its clusters' daemon
logs when a test fails, and a result's tests by name."""

import sys
import unittest

from kiln_cluster import Cluster


class ClusterTestCase(unittest.TestCase):
    """A TestCase whose clusters' daemon logs are printed (to stderr) when the
    test fails or errs, whatever failed: the logs are read before the temp
    dir is removed.  Set KILN_KEEP_TMP=1 to keep the temp dirs as well."""

    def cluster(self, **kwargs):
        c = Cluster(self, **kwargs)
        self._kiln_clusters.append(c)
        return c

    def run(self, result=None):
        self._kiln_clusters = []
        if result is None:
            result = self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        try:
            return super().run(result)
        finally:
            if len(result.failures) + len(result.errors) > before:
                for c in self._kiln_clusters:
                    sys.stderr.write("\n===== daemon logs of %s (%s) =====\n%s\n"
                                     % (self.id(), c.tmp, c.final_logs or c.logs()))


def tests_by_name(result):
    """{short test name: outcome} from a result's "tests" list (file or kilnctl)."""
    return {t["name"]: t["outcome"] for t in result["tests"]}
