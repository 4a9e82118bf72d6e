#include "util/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace baton {

Status WriteFileAtomically(const std::filesystem::path& path, std::string_view data) {
  const std::filesystem::path dir = path.parent_path().empty() ? "." : path.parent_path();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::Unavailable("cannot create folder " + dir.string() + ": " + ec.message());
  std::string tmp = (dir / ("." + path.filename().string() + ".tmp-XXXXXX")).string();
  const int fd = mkstemp(tmp.data());
  if (fd < 0)
    return Status::Unavailable("cannot create a temporary file in " + dir.string() + ": " + std::strerror(errno));
  auto fail = [&](const std::string& what) {
    Status err = Status::Unavailable(what + " " + tmp + ": " + std::strerror(errno));
    close(fd);
    unlink(tmp.c_str());
    return err;
  };
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("cannot write");
    done += static_cast<size_t>(n);
  }
  // mkstemp makes 0600; a report is meant to be shared. (Not umask(): reading it means setting it,
  // which races with other threads creating files.)
  fchmod(fd, 0644);
  if (fsync(fd) != 0) return fail("cannot fsync");
  if (close(fd) != 0) {
    Status err = Status::Unavailable("cannot close " + tmp + ": " + std::strerror(errno));
    unlink(tmp.c_str());
    return err;
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    Status err = Status::Unavailable("cannot rename " + tmp + " to " + path.string() + ": " + std::strerror(errno));
    unlink(tmp.c_str());
    return err;
  }
  // The rename is durable only once the folder entry is.
  const int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return Status::Ok();
}

}  // namespace baton
