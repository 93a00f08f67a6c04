// pxctl status | version | service pool show.
#include "tools/pxctl/commands.h"

namespace pxd::pxctl {

namespace {

void add_status(CLI::App& app, Action* action) {
  CLI::App* cmd = app.add_subcommand("status", "Show this node, its pools and space");
  cmd->callback([action] {
    *action = [](Session& s) {
      auto request = s.client().control().statusRequest();
      auto response = s.client().call(request);
      if (s.json()) return s.print_json(node_json(response.getNode()));
      s.print(node_block(response.getNode()));
    };
  });
}

void add_version(CLI::App& app, Action* action) {
  CLI::App* cmd = app.add_subcommand("version", "Show the versions of pxctl and of pxd");
  cmd->callback([action] {
    *action = [](Session& s) {
      auto client_line = std::string("Client version: ") + kClientVersion + " (control API " +
                         std::to_string(proto::API_VERSION) + ")\n";
      // Without -j the client's version is useful even when pxd cannot be reached.
      if (!s.json()) s.print(client_line);
      Client& client = s.client();
      if (s.json()) {
        return s.print_json(
            Json{{"client", {{"version", kClientVersion}, {"api_version", proto::API_VERSION}}},
                 {"server",
                  {{"version", client.server_version()},
                   {"api_version", client.server_api_version()}}}});
      }
      s.print("Server version: " + client.server_version() + " (control API " +
              std::to_string(client.server_api_version()) + ")\n");
    };
  });
}

void add_service(CLI::App& app, Action* action) {
  CLI::App* service = app.add_subcommand("service", "Node service operations");
  service->require_subcommand(1);
  CLI::App* pool = service->add_subcommand("pool", "Storage pools");
  pool->require_subcommand(1);
  CLI::App* show = pool->add_subcommand("show", "Show the storage pools and their space");
  show->callback([action] {
    *action = [](Session& s) {
      auto request = s.client().control().listPoolsRequest();
      auto response = s.client().call(request);
      if (s.json()) {
        Json out = Json::array();
        for (auto p : response.getPools()) out.push_back(pool_json(p));
        return s.print_json(out);
      }
      s.print(pool_table(response.getPools()));
    };
  });
}

}  // namespace

void add_node_commands(CLI::App& app, Action* action) {
  add_status(app, action);
  add_version(app, action);
  add_service(app, action);
}

}  // namespace pxd::pxctl
