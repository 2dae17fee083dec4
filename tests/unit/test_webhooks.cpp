// Forge push webhooks: [[webhook]] tables are checked like the other secret
// keys, the HMAC matches a published test vector, and a delivery is
// answered 404 (no [[webhook]]), 401 (bad or missing signature or token),
// 200 (not a push: ignored) or 202 with the Notify to relay.
// The Kiln headers first: cmocka.h defines a fail() macro.
#include <sys/stat.h>

#include <map>

#include <kiln/config.hpp>

#include "http/webhooks.hpp"
#include "webhook_config.hpp"

#include "config_error_of.hpp"
#include "test.hpp"

using namespace kiln;

namespace {

const std::string kSecret = "0123456789abcdef-webhook-secret";

// One delivery with these headers (lower-case names).
struct Delivery {
    std::map<std::string, std::string> headers;
    std::string body = R"({"ref":"refs/heads/main","after":"abc"})";
    WebhookAnswer to(const std::vector<WebhookConfig> &hooks, const std::string &forge,
                     const std::string &repo = "app")
    {
        WebhookDelivery d{forge, repo, "127.0.0.1:5555", body,
                          [this](const std::string &name) -> const std::string * {
                              auto it = headers.find(name);
                              return it == headers.end() ? nullptr : &it->second;
                          }};
        return answer_webhook(hooks, d);
    }
};

std::vector<WebhookConfig> hooks()
{
    return {{"app", "github", kSecret}, {"app", "gitea", kSecret}, {"app", "gitlab", kSecret}};
}

// RFC 4231 test case 2.
void test_hmac_matches_rfc_4231(void **)
{
    assert_string_equal(
        S(hub_signature("Jefe", "what do ya want for nothing?")),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    assert_true(hub_signature_ok("Jefe", "what do ya want for nothing?",
                                 hub_signature("Jefe", "what do ya want for nothing?")));
    assert_false(hub_signature_ok("Jefe", "what do ya want for nothing!",
                                  hub_signature("Jefe", "what do ya want for nothing?")));
    // Truncated, not hex, no prefix, trailing bytes: refused, never read past.
    std::string good = hub_signature("k", "b");
    assert_false(hub_signature_ok("k", "b", good.substr(0, good.size() - 2)));
    assert_false(hub_signature_ok("k", "b", good.substr(7)));
    assert_false(hub_signature_ok("k", "b", good + "00"));
    assert_false(hub_signature_ok("k", "b", "sha256=" + std::string(64, 'z')));
    assert_true(token_ok(kSecret, kSecret));
    assert_false(token_ok(kSecret, kSecret + "x"));
    assert_false(token_ok(kSecret, ""));
}

void test_github_push_is_relayed_with_its_branch(void **)
{
    Delivery d;
    d.headers = {{"x-github-event", "push"}, {"x-hub-signature-256", hub_signature(kSecret, d.body)}};
    WebhookAnswer a = d.to(hooks(), "github");
    assert_int_equal(a.status, 202);
    assert_true(a.notify.has_value());
    assert_string_equal(S(a.notify->repo), "app");
    assert_string_equal(S(a.notify->branch), "main");
}

void test_gitea_and_forgejo_push(void **)
{
    Delivery d;
    std::string hex = hub_signature(kSecret, d.body).substr(7);
    d.headers = {{"x-gitea-event", "push"}, {"x-gitea-signature", hex}};
    assert_int_equal(d.to(hooks(), "gitea").status, 202);
    // Forgejo's own header names, on the forgejo path (same [[webhook]]).
    d.headers = {{"x-forgejo-event", "push"}, {"x-forgejo-signature", hex}};
    assert_int_equal(d.to(hooks(), "forgejo").status, 202);
    d.headers = {{"x-gitea-event", "push"}, {"x-hub-signature-256", "sha256=" + hex}};
    assert_int_equal(d.to(hooks(), "gitea").status, 202);
}

void test_gitlab_push_with_token(void **)
{
    Delivery d;
    d.headers = {{"x-gitlab-event", "Push Hook"}, {"x-gitlab-token", kSecret}};
    WebhookAnswer a = d.to(hooks(), "gitlab");
    assert_int_equal(a.status, 202);
    assert_string_equal(S(a.notify->branch), "main");
}

void test_bad_signatures_are_401_and_relay_nothing(void **)
{
    Delivery d;
    d.headers = {{"x-github-event", "push"},
                 {"x-hub-signature-256", hub_signature("another-secret-of-16+", d.body)}};
    WebhookAnswer a = d.to(hooks(), "github");
    assert_int_equal(a.status, 401);
    assert_false(a.notify.has_value());
    d.headers.erase("x-hub-signature-256");
    assert_int_equal(d.to(hooks(), "github").status, 401);
    // A GitHub signature is no GitLab token, and a wrong token is refused.
    d.headers = {{"x-gitlab-event", "Push Hook"}, {"x-hub-signature-256", hub_signature(kSecret, d.body)}};
    assert_int_equal(d.to(hooks(), "gitlab").status, 401);
    d.headers = {{"x-gitlab-event", "Push Hook"}, {"x-gitlab-token", "not-the-secret"}};
    assert_int_equal(d.to(hooks(), "gitlab").status, 401);
}

void test_unknown_repo_or_forge_is_404(void **)
{
    Delivery d;
    d.headers = {{"x-github-event", "push"}, {"x-hub-signature-256", hub_signature(kSecret, d.body)}};
    assert_int_equal(d.to(hooks(), "github", "other").status, 404);
    assert_int_equal(d.to(hooks(), "bitbucket").status, 404);
    assert_int_equal(d.to({{"app", "gitlab", kSecret}}, "github").status, 404);
}

void test_other_events_and_tags_are_ignored(void **)
{
    Delivery d;
    d.headers = {{"x-github-event", "ping"}, {"x-hub-signature-256", hub_signature(kSecret, d.body)}};
    WebhookAnswer a = d.to(hooks(), "github");
    assert_int_equal(a.status, 200);
    assert_false(a.notify.has_value());
    d.body = R"({"ref":"refs/tags/v1.0"})";
    d.headers = {{"x-github-event", "push"}, {"x-hub-signature-256", hub_signature(kSecret, d.body)}};
    assert_int_equal(d.to(hooks(), "github").status, 200);
    // A push whose body names no ref (form-encoded): every branch is polled.
    d.body = "payload=%7B%7D";
    d.headers = {{"x-github-event", "push"}, {"x-hub-signature-256", hub_signature(kSecret, d.body)}};
    a = d.to(hooks(), "github");
    assert_int_equal(a.status, 202);
    assert_string_equal(S(a.notify->branch), "");
}

struct Files {
    TempDir dir{"kiln-webhooks"};
    std::string secret_file(mode_t mode)
    {
        std::string path = dir / ("secret-" + std::to_string(mode));
        std::ofstream(path) << kSecret << "\n";
        chmod(path.c_str(), mode);
        return path;
    }
};

std::vector<WebhookConfig> parse(const std::string &toml)
{
    return webhooks_from(parse_config_string(toml, "dispatcher.toml"));
}

int setup(void **state)
{
    *state = new Files;
    return static_cast<Files *>(*state)->dir.path().empty();
}
int teardown(void **state)
{
    delete static_cast<Files *>(*state);
    return 0;
}

void test_config_reads_the_secret(void **state)
{
    auto *f = static_cast<Files *>(*state);
    auto hooks = parse("[[webhook]]\nrepo = \"app\"\nforge = \"forgejo\"\nsecret_file = \"" +
                       f->secret_file(0600) + "\"\n");
    assert_int_equal(hooks.size(), 1);
    assert_string_equal(S(hooks[0].forge), "gitea");
    assert_string_equal(S(hooks[0].secret), S(kSecret));
}

void test_config_errors_name_the_key(void **state)
{
    auto *f = static_cast<Files *>(*state);
    std::string ok = f->secret_file(0600);
    std::string err = error_of([&] {
        parse("[[webhook]]\nrepo = \"app\"\nforge = \"github\"\nsecret_file = \"" +
              f->secret_file(0644) + "\"\n");
    });
    assert_non_null(std::strstr(err.c_str(), "dispatcher.toml:4:"));
    assert_non_null(std::strstr(err.c_str(), "webhook[0].secret_file"));
    assert_non_null(std::strstr(err.c_str(), "chmod 600"));
    err = error_of([&] { parse("[[webhook]]\nrepo = \"app\"\nforge = \"bitbucket\"\nsecret_file = \"" + ok + "\"\n"); });
    assert_non_null(std::strstr(err.c_str(), "unknown forge 'bitbucket'"));
    err = error_of([&] { parse("[[webhook]]\nrepo = \"app\"\nforge = \"github\"\n"); });
    assert_non_null(std::strstr(err.c_str(), "secret_file: required key is missing"));
    err = error_of([&] {
        parse("[[webhook]]\nrepo = \"app\"\nforge = \"github\"\nsecret_file = \"" + ok +
              "\"\nsecret = \"x\"\n");
    });
    assert_non_null(std::strstr(err.c_str(), "secret"));
    std::string one = "[[webhook]]\nrepo = \"app\"\nforge = \"gitea\"\nsecret_file = \"" + ok + "\"\n";
    err = error_of([&] { parse(one + one); });
    assert_non_null(std::strstr(err.c_str(), "a second [[webhook]]"));
}

} // namespace

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hmac_matches_rfc_4231),
        cmocka_unit_test(test_github_push_is_relayed_with_its_branch),
        cmocka_unit_test(test_gitea_and_forgejo_push),
        cmocka_unit_test(test_gitlab_push_with_token),
        cmocka_unit_test(test_bad_signatures_are_401_and_relay_nothing),
        cmocka_unit_test(test_unknown_repo_or_forge_is_404),
        cmocka_unit_test(test_other_events_and_tags_are_ignored),
        cmocka_unit_test_setup_teardown(test_config_reads_the_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors_name_the_key, setup, teardown),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
