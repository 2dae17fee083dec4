#pragma once
// The Python program the unittest plugin runs with `python3 -c`: unittest's
// own discovery, loader and TextTestRunner (so the log reads exactly like
// `unittest -v`), plus a result class that writes one record per test to the
// original stdout.
//
// A shard (test ids given) discovers the suite exactly as a whole run does
// and prunes it to its own tests, rather than loading each id by name: a
// doctest's id names the function or class it documents, a
// FunctionTestCase's the bare function name, and load_tests may build tests
// no name leads to.  Pruning keeps the suite tree, so class and module
// fixtures run as in a whole run; a fixture's error is reported by the one
// shard holding its scope's first test, so the merged result has it once.
//
// argv: MODE(run|list) TESTS_DIR PATTERN [ID...].  Records are lines
// "\x1ekiln\tEVENT\tFIELD..." with \\ \t \n \r escaped:
//   start ID | end ID OUTCOME MS MESSAGE | test ID | done N | error WHY

namespace kiln_unittest {

inline constexpr char kRunner[] = R"PY(
import os, sys, time, unittest

# Records go to the original stdout; everything else (unittest's verbose
# report, whatever the tests print, at any level) goes to stderr, so records
# cannot be interleaved with test output.
rec = open(os.dup(1), 'w', encoding='utf-8', errors='backslashreplace')
sys.stdout.flush()
os.dup2(2, 1)
sys.stdout = sys.stderr

def esc(s):
    return str(s).replace('\\', '\\\\').replace('\t', '\\t').replace('\n', '\\n').replace('\r', '\\r')

def emit(*fields):
    rec.write('\x1ekiln\t' + '\t'.join(esc(f) for f in fields) + '\n')
    rec.flush()

def cap(s, n=16000):
    if len(s) <= n:
        return s
    return s[:n // 2] + '\n[... %d characters cut ...]\n' % (len(s) - n) + s[-n // 2:]

def flatten(s):
    if isinstance(s, unittest.TestSuite):
        for t in s:
            yield from flatten(t)
    else:
        yield s

FAILED = unittest.loader._FailedTest

def name(t):
    if isinstance(t, FAILED):
        return t.id().replace('unittest.loader._FailedTest.', '', 1)
    return t.id()

# In a shard: ({scope: id of its first test in the whole suite}, ids of the
# shard's tests).  A failing setUpClass/setUpModule (or their tearDown) is
# reported by every shard that has a test of its scope; only the shard with
# the scope's first test reports it, so the merged result has it once, as a
# whole run does.
shard = None

def reports_fixture_error(description):
    if shard is None:
        return True
    first, kept = shard
    scope = description[description.find(' (') + 2:-1] if description.endswith(')') else ''
    return scope not in first or first[scope] in kept

RANK = {'passed': 0, 'skipped': 1, 'failed': 2, 'error': 3}

class Result(unittest.TextTestResult):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.cur = {}

    def startTest(self, test):
        emit('start', name(test))
        self.cur[id(test)] = [time.monotonic(), 'passed', []]
        super().startTest(test)

    def note(self, test, outcome, msg, escalate=True):
        test = getattr(test, 'test_case', test)  # a subTest belongs to its test
        st = self.cur.get(id(test))
        if st is None:  # setUpClass/setUpModule errors come without startTest
            if reports_fixture_error(name(test)):
                emit('end', name(test), outcome, 0, cap(msg or ''))
            return
        if escalate and RANK[outcome] > RANK[st[1]]:
            st[1] = outcome
        if msg:
            st[2].append(msg)

    def addError(self, test, err):
        super().addError(test, err)
        self.note(test, 'error', self._exc_info_to_string(err, test))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.note(test, 'failed', self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        sub = test is not getattr(test, 'test_case', test)
        self.note(test, 'skipped', 'skipped: %s' % reason, escalate=not sub)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self.note(test, 'passed', 'expected failure')

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.note(test, 'failed', 'unexpected success')

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = 'failed' if issubclass(err[0], test.failureException) else 'error'
            self.note(test, kind, '%s\n%s' % (subtest, self._exc_info_to_string(err, test)))

    def stopTest(self, test):
        super().stopTest(test)
        st = self.cur.pop(id(test), None)
        if st is not None:
            ms = int(round((time.monotonic() - st[0]) * 1000))
            emit('end', name(test), st[1], ms, cap('\n'.join(st[2])))

def keep_only(suite, wanted, kept):
    """Prunes the discovered suite tree, in place, to the tests named in
    `wanted` (every occurrence of a duplicated id), dropping suites left
    empty.  The kept tests run inside their own suites, so load_tests' custom
    suites, class and module fixtures behave as in a whole run.  The ids of
    the kept tests go to `kept`."""
    children = []
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            keep_only(t, wanted, kept)
            if t.countTestCases():
                children.append(t)
        elif name(t) in wanted:
            kept.add(id(t))
            children.append(t)
    suite._tests = children

def first_of_scopes(suite):
    """{scope: id of its first test}: the module and the class of each test,
    as unittest names them in the errors of their fixtures."""
    first = {}
    for t in flatten(suite):
        cls = type(t)
        for scope in (cls.__module__, '%s.%s' % (cls.__module__, cls.__qualname__)):
            first.setdefault(scope, id(t))
    return first

def main():
    global shard
    mode, start, pattern = sys.argv[1:4]
    names = sys.argv[4:]
    start = os.path.abspath(start)
    # A tests/ package is imported from the workspace (like `discover -t .`);
    # a plain directory is its own top level, as `discover -s tests` does it.
    top = os.getcwd() if os.path.isfile(os.path.join(start, '__init__.py')) else start
    if top not in sys.path:
        sys.path.insert(0, top)
    loader = unittest.TestLoader()
    try:
        # A shard discovers the suite exactly as a whole run does and keeps
        # its own tests: loading each id by name instead would not find what
        # discovery finds (a doctest's id names the function itself, a
        # generated test may have no attribute of its name).
        suite = loader.discover(start, pattern, top)
    except Exception as e:
        emit('error', 'cannot load tests: %s: %s' % (type(e).__name__, e))
        return 2
    missing = []
    if names:
        wanted, kept = set(names), set()
        first = first_of_scopes(suite)
        keep_only(suite, wanted, kept)
        shard = (first, kept)
        found = {name(t) for t in flatten(suite)}
        missing = [n for n in dict.fromkeys(names) if n not in found]
    if mode == 'list':
        tests = list(flatten(suite))
        for t in tests:
            emit('test', name(t))
        emit('done', len(tests))
        return 0
    runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=2, resultclass=Result)
    result = runner.run(suite)
    for n in missing:
        emit('end', n, 'error', 0, 'not found when this shard discovered the tests again '
             '(an id that changes from one discovery to the next cannot be sharded)')
    emit('done', result.testsRun + len(missing))
    return 0 if result.wasSuccessful() and not missing else 1

sys.exit(main())
)PY";

} // namespace kiln_unittest
