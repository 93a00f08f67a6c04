// pxd: the per-node storage daemon. main() reads the settings, then wires every part
// explicitly: instance lock -> Node (pool) -> control worker -> control server -> NBD
// server -> attachments -> Docker plugin (a control API client on its own thread), and runs
// the kj event loop on this thread until SIGTERM or SIGINT.
#include <kj/async-unix.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <iostream>

#include "common/log.h"
#include "common/units.h"
#include "daemon/config.h"
#include "daemon/control_server.h"
#include "daemon/instance_lock.h"
#include "daemon/node.h"
#include "daemon/systemd_notify.h"
#include "daemon/version.h"
#include "nbd/server.h"
#include "tools/docker-plugin/plugin.h"

namespace pxd::daemon {
namespace {

constexpr int kExitUsage = 2;
constexpr int kExitFailure = 1;

std::string help_footer() {
  std::string out =
      "\nEvery option is also a key of the config file (TOML, default /etc/pxd/pxd.conf):\n";
  for (const auto& key : config_keys()) {
    char line[256];
    std::snprintf(line, sizeof(line), "  %-26s %-18s %s\n", key.name, key.type, key.help);
    out += line;
  }
  out +=
      "Command-line options override the file. With no options at all pxd runs a single node\n"
      "on a sparse-file pool under /var/lib/pxd.\n";
  return out;
}

// Parses the command line and the config file into `config`. Returns an exit code to
// stop with, or -1 to run.
int read_settings(int argc, char** argv, Config* config) {
  CLI::App app{"pxd: container-native block storage daemon", "pxd"};
  std::string data_dir, socket, node_name, log_level, config_path, nbd_socket, nbd_listen,
      device_dir, docker_plugin_socket;
  std::vector<std::string> pools, labels;
  app.add_option("--config", config_path, "config file (default /etc/pxd/pxd.conf)");
  app.add_option("--data-dir", data_dir, "state and default pool (default /var/lib/pxd)");
  app.add_option("--control-socket", socket, "control API socket (default /run/pxd/pxd.sock)");
  app.add_option("--nbd-socket", nbd_socket,
                 "NBD export socket (default /run/pxd/nbd.sock; \"\" disables)");
  app.add_option("--nbd-listen", nbd_listen,
                 "NBD over TCP: PORT (loopback) or ADDR:PORT, unauthenticated (default off)");
  app.add_option("--docker-plugin-socket", docker_plugin_socket,
                 "Docker volume plugin socket (default /run/docker/plugins/pxd.sock; \"\" "
                 "disables)");
  app.add_option("--device-dir", device_dir,
                 "where the pxd<ID> links of attached volumes go (default /dev)");
  app.add_option("--pool", pools,
                 "pool device PATH[:SIZE][:thick], repeatable (default: sparse file in data dir)");
  app.add_option("--node-name", node_name, "this node's name (default: host name)");
  app.add_option("--label", labels, "node label k=v (zone, rack, ...), repeatable");
  app.add_option("--log-level", log_level, "debug, info, warn or error (default info)");
  std::string attach_frontend;
  app.add_option("--attach-frontend", attach_frontend,
                 "auto (ublk, else nbd-loop), ublk or nbd-loop (default auto)");
  bool detach_on_stop = false;
  app.add_flag("--detach-on-stop", detach_on_stop, "on SIGTERM unmount and detach every volume");
  app.set_version_flag("--version", std::string("pxd ") + kVersion);
  app.footer(help_footer());
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : kExitUsage;
  }
  if (!config_path.empty()) {
    config->config_path = config_path;
    config->config_path_given = true;
  }
  Status s = load_config_file(config);
  if (!s.is_ok()) {
    std::cerr << "pxd: " << s.message() << "\n";
    return kExitUsage;
  }
  auto fail = [](const Status& st) {
    std::cerr << "pxd: " << st.message() << "\n";
    return kExitUsage;
  };
  if (app.count("--data-dir")) config->data_dir = data_dir;
  if (app.count("--control-socket")) config->control_socket = socket;
  if (app.count("--nbd-socket")) config->nbd_socket = nbd_socket;
  if (app.count("--nbd-listen")) config->nbd_listen = nbd_listen;
  if (app.count("--device-dir")) config->device_dir = device_dir;
  if (app.count("--docker-plugin-socket")) config->docker_plugin_socket = docker_plugin_socket;
  if (app.count("--node-name")) config->node_name = node_name;
  if (app.count("--attach-frontend")) {
    Status st = check_attach_frontend(attach_frontend);
    if (!st.is_ok()) return fail(st);
    config->attach_frontend = attach_frontend;
  }
  if (detach_on_stop) config->detach_on_stop = true;
  if (app.count("--pool")) {
    config->pools.clear();
    for (const auto& p : pools) {
      auto setting = parse_pool_setting(p);
      if (setting.has_error()) return fail(setting.error());
      config->pools.push_back(setting.value());
    }
  }
  for (const auto& l : labels) {
    Status st = parse_label(l, &config->labels);
    if (!st.is_ok()) return fail(st);
  }
  if (app.count("--log-level") && !log::parse_level(log_level, &config->log_level))
    return fail(
        invalid_argument("log level '" + log_level + "' is not one of debug, info, warn, error"));
  if (config->data_dir.empty() || config->data_dir[0] != '/')
    return fail(invalid_argument("data dir '" + config->data_dir + "' must be an absolute path"));
  if (!config->docker_plugin_socket.empty() && config->docker_plugin_socket[0] != '/')
    return fail(invalid_argument("Docker plugin socket '" + config->docker_plugin_socket +
                                 "' must be an absolute path"));
  if (config->device_dir.empty() || config->device_dir[0] != '/')
    return fail(
        invalid_argument("device dir '" + config->device_dir + "' must be an absolute path"));
  if (!config->nbd_socket.empty() && config->nbd_socket[0] != '/')
    return fail(
        invalid_argument("NBD socket '" + config->nbd_socket + "' must be an absolute path"));
  if (config->node_name.empty()) {
    char host[256] = {};
    ::gethostname(host, sizeof(host) - 1);
    config->node_name = host;
  }
  return -1;
}

// Pings systemd's watchdog at half its interval, for as long as the loop runs.
kj::Promise<void> watchdog_loop(kj::Timer& timer, uint64_t usec) {
  return timer.afterDelay(usec / 2 * kj::MICROSECONDS).then([&timer, usec] {
    notify_watchdog();
    return watchdog_loop(timer, usec);
  });
}

int run(const Config& config) {
  log::set_level(config.log_level);
  // Signals are captured before any thread starts, so every thread inherits the mask.
  kj::UnixEventPort::captureSignal(SIGTERM);
  kj::UnixEventPort::captureSignal(SIGINT);
  std::signal(SIGPIPE, SIG_IGN);

  if (::mkdir(config.data_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    PXD_LOG(kError) << errno_status(errno, "create data directory " + config.data_dir).message();
    return kExitFailure;
  }
  auto lock = InstanceLock::acquire(config.data_dir);
  if (lock.has_error()) {
    PXD_LOG(kError) << lock.error().message();
    return kExitFailure;
  }
  PXD_LOG(kInfo) << "pxd " << kVersion << " starting: node " << config.node_name << ", data dir "
                 << config.data_dir;
  notify_status("opening pools");
  auto node = Node::start(config);
  if (node.has_error()) {
    PXD_LOG(kError) << "cannot open the pool: " << node.error().message();
    return kExitFailure;
  }
  auto io = kj::setupAsyncIo();
  ControlWorker worker;
  ControlServer server(*node.value(), worker, io);
  Status listening = server.listen(config.control_socket);
  if (!listening.is_ok()) {
    PXD_LOG(kError) << listening.message();
    return kExitFailure;
  }
  try {
    server.self_check().wait(io.waitScope);
  } catch (const kj::Exception& e) {
    PXD_LOG(kError) << "the control socket does not answer: " << e.getDescription().cStr();
    return kExitFailure;
  }
  // NBD exports (nbd/server.h); its handles are released before the Node closes the pool.
  std::unique_ptr<nbd::Server> nbd_server;
  if (!config.nbd_socket.empty() || !config.nbd_listen.empty()) {
    nbd::ServerOptions nbd_options;
    nbd_options.unix_path = config.nbd_socket;
    nbd_options.tcp_listen = config.nbd_listen;
    auto started = nbd::Server::start(nbd_options, *node.value());
    if (started.has_value()) {
      nbd_server = std::move(started).value();
    } else {
      PXD_LOG(kError) << "cannot serve NBD: " << started.error().message();
      return kExitFailure;
    }
  }
  // Attached volumes: re-adopt live devices, re-create lost ones, remove stale ones. Their
  // relays reconnect to the NBD socket opened above.
  node.value()->restore_attachments();
  // Docker's volume plugin (doc/docker.md), a client of the control socket above; its
  // socket exists before READY, so Docker, ordered after pxd, finds it.
  std::unique_ptr<docker::DockerPlugin> docker_plugin;
  if (!config.docker_plugin_socket.empty()) {
    docker::PluginOptions options{config.docker_plugin_socket, config.data_dir + "/mounts",
                                  config.data_dir + "/docker-mounts.json",
                                  docker::control_api_service(config.control_socket)};
    docker_plugin = std::make_unique<docker::DockerPlugin>(std::move(options));
    Status plugin = docker_plugin->start().wait(io.waitScope);
    if (!plugin.is_ok()) {
      PXD_LOG(kError) << "cannot serve the Docker plugin: " << plugin.message();
      return kExitFailure;
    }
  }
  NodeView status = node.value()->status();
  std::string ready = "serving " + std::to_string(status.volumes) + " volumes, " +
                      std::to_string(status.snapshots) + " snapshots on " + config.control_socket;
  notify_ready(ready);
  PXD_LOG(kInfo) << "ready: " << ready;

  kj::Promise<void> watchdog = kj::NEVER_DONE;
  if (uint64_t usec = watchdog_usec()) watchdog = watchdog_loop(io.provider->getTimer(), usec);
  auto stop = io.unixEventPort.onSignal(SIGTERM).exclusiveJoin(io.unixEventPort.onSignal(SIGINT));
  siginfo_t signal = stop.wait(io.waitScope);
  PXD_LOG(kInfo) << "signal " << signal.si_signo << ": stopping";
  notify_stopping();
  // The plugin first: its calls in flight still need the control API.
  if (docker_plugin)
    docker_plugin->stop(config.shutdown_timeout_seconds * kj::SECONDS).wait(io.waitScope);
  server.stop_accepting();
  bool drained = server.drain(config.shutdown_timeout_seconds * kj::SECONDS).wait(io.waitScope);
  if (!drained) PXD_LOG(kWarn) << "stopping with control calls still running";
  // ublk devices are released for the next pxd (or, with detach_on_stop, detached while
  // the NBD socket still serves the fallback's relays): no block I/O reaches the pool after.
  node.value()->stop_attachments(config.detach_on_stop);
  // NBD clients get no new requests read; those in flight complete and are answered.
  if (nbd_server) nbd_server->stop();
  Status synced = node.value()->sync();
  if (!synced.is_ok()) {
    PXD_LOG(kError) << "final sync failed: " << synced.message();
    return kExitFailure;
  }
  PXD_LOG(kInfo) << "stopped";
  return drained ? 0 : kExitFailure;
}

}  // namespace
}  // namespace pxd::daemon

int main(int argc, char** argv) {
  ::umask(0077);  // sockets and files are private until pxd sets their modes
  pxd::daemon::Config config;
  int code = pxd::daemon::read_settings(argc, argv, &config);
  if (code >= 0) return code;
  return pxd::daemon::run(config);
}
