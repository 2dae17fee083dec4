// The web pages' routes (see pages_routes.hpp).
#include "pages_routes.hpp"

#include <algorithm>
#include <memory>

#include <kiln/daemon.hpp>
#include <kiln/messages.hpp>

#include "page_script.hpp"

namespace kiln {
namespace {

const std::string kHtml = "text/html; charset=utf-8";

// The pages hold what peers sent: forbid any script but our own file and
// any framing, as a second line behind escaping.
std::vector<std::pair<std::string, std::string>> page_headers()
{
    return {{"cache-control", "no-store"},
            {"x-content-type-options", "nosniff"},
            {"content-security-policy",
             "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; "
             "base-uri 'none'; form-action 'none'"}};
}

bool commit_prefix(const std::string &id)
{
    return id.size() >= 4 && id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
               return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
           });
}

template <class Answer> void not_found(Answer &responder, const std::string &what)
{
    responder.send(404, kHtml, render_not_found(what), page_headers());
}

// The commit's page, or a 404 page.
template <class Answer>
void answer_commit(Answer &responder, const PageSources &src, const std::string &id)
{
    std::string html;
    if (!commit_prefix(id) || !render_commit(src, id, unix_ms(), html))
        return not_found(responder, "No job for commit " + id +
                                        " (unknown, ambiguous, or not 4 to 64 hex digits).");
    responder.send(200, kHtml, std::move(html), page_headers());
}

} // namespace

void add_page_routes(HttpServer &server, PageSources sources)
{
    auto src = std::make_shared<PageSources>(std::move(sources));
    auto index = std::make_shared<BranchIndex>();

    server.route("GET", "/", [src, index](const HttpRequest &req, HttpResponder &responder) {
        if (req.path != "/")
            return not_found(responder, "There is no page at this address.");
        responder.send(200, kHtml, render_home(*src, *index, unix_ms()), page_headers());
    });
    server.route("GET", "/commit/", [src](const HttpRequest &req, HttpResponder &responder) {
        std::string id = req.path.substr(std::string("/commit/").size());
        std::string html;
        if (!commit_prefix(id) || !src->recall || render_commit(*src, id, unix_ms(), html))
            return html.empty() ? answer_commit(responder, *src, id)
                                : responder.send(200, kHtml, std::move(html), page_headers());
        // Not in memory: a commit that finished a while ago is read back from
        // the store (off the loop), and the page answered then.
        auto later = responder.later();
        src->recall(id, [src, id, later] {
            if (!later->gone())
                answer_commit(*later, *src, id);
        });
    });
    server.route("GET", "/runner/", [src](const HttpRequest &req, HttpResponder &responder) {
        std::string name = req.path.substr(std::string("/runner/").size());
        std::string html;
        if (!valid_name(name) || !render_runner(*src, name, unix_ms(), html))
            return not_found(responder, "No runner named " + name + ".");
        responder.send(200, kHtml, std::move(html), page_headers());
    });
    server.route("GET", std::string(kPageScriptPath),
                 [](const HttpRequest &req, HttpResponder &responder) {
                     if (req.path != kPageScriptPath)
                         return not_found(responder, "There is no file at this address.");
                     responder.send(200, std::string(kPageScriptType), std::string(kPageScript),
                                    {{"cache-control", "max-age=300"},
                                     {"x-content-type-options", "nosniff"}});
                 });
}

} // namespace kiln
