#pragma once
// The running operations of one plugin instance, and the three things every
// plugin does with them the same way:
//   - start-or-delete: a new op either starts (it is then in the set and its
//     callback will run once) or is deleted and the start call returns the
//     error — never both, never neither, also when memory runs out;
//   - cancel: the pointer cancel() gets is looked up first, so an op that
//     has already completed (a caller bug, but a cheap one to survive) is
//     ignored instead of touched;
//   - out of memory in a loop callback: the op ends with an error instead of
//     an exception unwinding into libuv's C frames.
// Header-only because a plugin links nothing of Kiln: each .so gets its own
// copy.  Used by every bundled plugin (files, git, unittest, script, ctest).
#include <cerrno>
#include <exception>
#include <new>
#include <unordered_set>

namespace kiln_ops {

template <class Op> class OpSet {
  public:
    // Creates an op and calls `begin(op)`, which fills it in, starts it and
    // returns 0 or a negative errno.  On 0 the op is running and *op_out
    // (when not NULL) names it; otherwise the op is deleted and the error
    // returned (-ENOMEM when memory ran out, or `begin` threw).  The op
    // joins the set before it begins, so that no allocation can fail after
    // it started; `begin` must therefore not throw once it has started
    // anything.
    template <class Begin> int start(void **op_out, Begin &&begin) noexcept
    {
        Op *op = new (std::nothrow) Op();
        if (!op)
            return -ENOMEM;
        try {
            ops_.insert(op);
        } catch (...) {
            delete op;
            return -ENOMEM;
        }
        int rc;
        try {
            rc = begin(op);
        } catch (...) {
            rc = -ENOMEM;
        }
        if (rc < 0) {
            ops_.erase(op);
            delete op;
            return rc;
        }
        if (op_out)
            *op_out = op;
        return 0;
    }

    // The running op that a cancel() pointer names, or nullptr.
    Op *running(void *op) const noexcept
    {
        auto it = ops_.find(static_cast<Op *>(op));
        return it == ops_.end() ? nullptr : *it;
    }

    // An op completing leaves the set before its callback runs, so that a
    // cancel() from inside the callback finds nothing to cancel.
    void remove(Op *op) noexcept { ops_.erase(op); }

    bool empty() const noexcept { return ops_.empty(); }

  private:
    std::unordered_set<Op *> ops_;
};

// The body of a loop callback that may allocate: an exception (out of
// memory, in practice) ends the op through `fail(why)` instead of unwinding
// into libuv.  `fail` completes the op; what it allocates is small.
template <class Body, class Fail> void guarded(Body &&body, Fail &&fail) noexcept
{
    try {
        body();
    } catch (const std::bad_alloc &) {
        fail("out of memory");
    } catch (const std::exception &e) {
        fail(e.what());
    } catch (...) {
        fail("unexpected exception");
    }
}

} // namespace kiln_ops
