#include "proc_stats.hpp"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

namespace kiln::bench {

ProcStats read_proc(int pid)
{
    ProcStats s;
    std::string base = "/proc/" + std::to_string(pid);
    {
        std::ifstream f(base + "/stat");
        std::string line;
        if (!std::getline(f, line))
            return s;
        // Fields after the ")" of comm: state is field 3; utime 14, stime 15.
        size_t close = line.rfind(')');
        if (close == std::string::npos)
            return s;
        std::istringstream in(line.substr(close + 2));
        std::vector<std::string> fields;
        std::string w;
        while (in >> w)
            fields.push_back(w);
        if (fields.size() < 13)
            return s;
        double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
        s.cpu_s = (std::stod(fields[11]) + std::stod(fields[12])) / tick;
        s.ok = true;
    }
    {
        std::ifstream f(base + "/status");
        std::string line;
        while (std::getline(f, line)) {
            if (line.rfind("VmHWM:", 0) == 0)
                s.hwm_kb = std::atol(line.c_str() + 6);
            else if (line.rfind("VmRSS:", 0) == 0)
                s.rss_kb = std::atol(line.c_str() + 6);
        }
    }
    {
        std::ifstream f(base + "/io");
        std::string key;
        long long v;
        while (f >> key >> v) {
            if (key == "syscw:")
                s.syscw = v;
            else if (key == "write_bytes:")
                s.write_bytes = v;
        }
    }
    return s;
}

} // namespace kiln::bench
