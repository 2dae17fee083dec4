#pragma once
// A job spec for tests of the dispatcher's parts: repository `repo` (its
// URL made from the name), branch main, a commit id of 40 `fill` digits.
#include <string>

#include <kiln/messages.hpp>

inline kiln::JobSpec spec(const std::string &repo, char fill)
{
    kiln::JobSpec s;
    s.repo = repo;
    s.url = "/srv/git/" + repo;
    s.branch = "main";
    s.commit = std::string(40, fill);
    return s;
}
