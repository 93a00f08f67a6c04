// The Docker plugin's JSON handling without I/O: request bodies of every endpoint, Create's
// options (--opt and the inline name form), names, reply bodies, and random and truncated
// bodies thrown at the parser.
#include "tools/docker-plugin/protocol.h"

#include <doctest/doctest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <random>

namespace pxd::docker {
namespace {

using Json = nlohmann::json;

std::string error_of(const Status& s) {
  return s.message();
}

template <class T>
std::string error_of(const Result<T>& r) {
  REQUIRE(r.has_error());
  return r.error().message();
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST_CASE("endpoints are the protocol's paths and nothing else") {
  CHECK(endpoint_from_path("/Plugin.Activate") == Endpoint::kActivate);
  CHECK(endpoint_from_path("/VolumeDriver.Create") == Endpoint::kCreate);
  CHECK(endpoint_from_path("/VolumeDriver.Remove") == Endpoint::kRemove);
  CHECK(endpoint_from_path("/VolumeDriver.Mount") == Endpoint::kMount);
  CHECK(endpoint_from_path("/VolumeDriver.Unmount") == Endpoint::kUnmount);
  CHECK(endpoint_from_path("/VolumeDriver.Path") == Endpoint::kPath);
  CHECK(endpoint_from_path("/VolumeDriver.Get") == Endpoint::kGet);
  CHECK(endpoint_from_path("/VolumeDriver.List") == Endpoint::kList);
  CHECK(endpoint_from_path("/VolumeDriver.Capabilities") == Endpoint::kCapabilities);
  for (const char* bad : {"", "/", "/VolumeDriver.create", "VolumeDriver.Create",
                          "/VolumeDriver.Create/", "/NetworkDriver.Create", "/Plugin.Activate2"})
    CHECK_MESSAGE(!endpoint_from_path(bad), bad);
  CHECK(contains(endpoint_list(), "/VolumeDriver.Capabilities"));
}

TEST_CASE("request bodies: what each endpoint needs") {
  SUBCASE("Activate, List and Capabilities take an empty body or any object") {
    for (Endpoint e : {Endpoint::kActivate, Endpoint::kList, Endpoint::kCapabilities}) {
      CHECK(parse_request(e, "").has_value());
      CHECK(parse_request(e, "  \n").has_value());
      CHECK(parse_request(e, "{}").has_value());
      CHECK(parse_request(e, "null").has_error());
      CHECK(parse_request(e, "{").has_error());
    }
  }
  SUBCASE("Name is required, a non-empty string") {
    for (Endpoint e : {Endpoint::kCreate, Endpoint::kRemove, Endpoint::kPath, Endpoint::kGet}) {
      auto ok = parse_request(e, R"({"Name": "db"})");
      REQUIRE(ok.has_value());
      CHECK(ok.value().name == "db");
      CHECK(contains(error_of(parse_request(e, "{}")), "no \"Name\""));
      CHECK(contains(error_of(parse_request(e, "")), "not valid JSON"));
      CHECK(contains(error_of(parse_request(e, R"({"Name": ""})")), "empty"));
      CHECK(contains(error_of(parse_request(e, R"({"Name": 7})")), "must be a string"));
      CHECK(contains(error_of(parse_request(e, R"(["db"])")), "not a JSON object"));
      CHECK(contains(error_of(parse_request(e, R"({"Name": "db")")), "not valid JSON"));
      // Fields Docker may add later do not break anything.
      CHECK(parse_request(e, R"({"Name": "db", "Future": {"x": 1}})").has_value());
    }
  }
  SUBCASE("Mount and Unmount need an ID") {
    for (Endpoint e : {Endpoint::kMount, Endpoint::kUnmount}) {
      auto ok = parse_request(e, R"({"Name": "db", "ID": "b87d7442"})");
      REQUIRE(ok.has_value());
      CHECK(ok.value().id == "b87d7442");
      CHECK(contains(error_of(parse_request(e, R"({"Name": "db"})")), "no \"ID\""));
      CHECK(contains(error_of(parse_request(e, R"({"Name": "db", "ID": 3})")), "string"));
      std::string long_id(300, 'a');
      CHECK(contains(error_of(parse_request(e, R"({"Name": "db", "ID": ")" + long_id + "\"}")),
                     "longer than"));
    }
  }
  SUBCASE("Create's Opts: null, absent or an object of strings") {
    CHECK(parse_request(Endpoint::kCreate, R"({"Name": "db", "Opts": null})").has_value());
    auto ok = parse_request(Endpoint::kCreate, R"({"Name": "db", "Opts": {"size": "1G"}})");
    REQUIRE(ok.has_value());
    CHECK(ok.value().opts.at("size") == "1G");
    CHECK(contains(error_of(parse_request(Endpoint::kCreate, R"({"Name": "db", "Opts": [1]})")),
                   "object of strings"));
    CHECK(contains(
        error_of(parse_request(Endpoint::kCreate, R"({"Name": "db", "Opts": {"size": 10}})")),
        "'size' must be a string"));
  }
  SUBCASE("oversized bodies and deep nesting") {
    std::string big = R"({"Name": "db", "Pad": ")" + std::string(kMaxBodyBytes, 'x') + "\"}";
    CHECK(contains(error_of(parse_request(Endpoint::kCreate, big)), "limit"));
    std::string deep =
        "{\"Name\": \"db\", \"x\": " + std::string(20000, '[') + std::string(20000, ']') + "}";
    CHECK(parse_request(Endpoint::kGet, deep).has_value());
  }
}

TEST_CASE("Create options with --opt: pxctl's flag names") {
  auto o = parse_create_options("db", {{"size", "10G"},
                                       {"fs", "xfs"},
                                       {"block_size", "512"},
                                       {"repl", "1"},
                                       {"label", "app=pg,env=prod"}});
  REQUIRE(o.has_value());
  CHECK(o.value().name == "db");
  CHECK(*o.value().size_bytes == 10ull << 30);
  CHECK(*o.value().fs == "xfs");
  CHECK(*o.value().block_size == 512);
  CHECK(*o.value().replicas == 1);
  CHECK(o.value().labels == Labels{{"app", "pg"}, {"env", "prod"}});
  CHECK(o.value().has_spec());

  auto plain = parse_create_options("db", {});
  REQUIRE(plain.has_value());
  CHECK(!plain.value().has_spec());
  CHECK(*parse_create_options("db", {{"size", "20"}}).value().size_bytes == 20ull << 30);
  CHECK(*parse_create_options("db", {{"size", "512M"}}).value().size_bytes == 512ull << 20);
  CHECK(parse_create_options("db", {{"parent", "snap1"}}).value().parent == "snap1");

  SUBCASE("an unknown option names the valid ones") {
    std::string e = error_of(parse_create_options("db", {{"sise", "1G"}}));
    CHECK(contains(e, "unknown option 'sise'"));
    CHECK(contains(e, "valid options: block_size, fs, label, parent, repl, size"));
  }
  SUBCASE("bad values") {
    CHECK(contains(error_of(parse_create_options("db", {{"size", "ten"}})), "invalid size 'ten'"));
    CHECK(contains(error_of(parse_create_options("db", {{"size", "0"}})), "zero"));
    CHECK(contains(error_of(parse_create_options("db", {{"size", "-1G"}})), "-1G"));
    CHECK(
        contains(error_of(parse_create_options("db", {{"size", "99999999999T"}})), "99999999999T"));
    CHECK(contains(error_of(parse_create_options("db", {{"size", ""}})), "size"));
    CHECK(contains(error_of(parse_create_options("db", {{"fs", "btrfs"}})),
                   "not one of ext4, xfs, none"));
    CHECK(contains(error_of(parse_create_options("db", {{"block_size", "1024"}})), "4096 or 512"));
    CHECK(contains(error_of(parse_create_options("db", {{"repl", "4"}})), "1, 2 or 3"));
    CHECK(contains(error_of(parse_create_options("db", {{"repl", "two"}})), "1, 2 or 3"));
    CHECK(contains(error_of(parse_create_options("db", {{"label", "nokey"}})), "key=value"));
    CHECK(contains(error_of(parse_create_options("db", {{"label", "a=1,a=2"}})), "twice"));
    CHECK(contains(error_of(parse_create_options("db", {{"parent", "../x"}})), "parent"));
    CHECK(contains(error_of(parse_create_options("db", {{"name", "other"}})),
                   "belongs in the volume name"));
  }
}

TEST_CASE("Create options in the name, as Portworx accepts them") {
  auto o = parse_create_options("size=10G,fs=xfs,name=db", {});
  REQUIRE(o.has_value());
  CHECK(o.value().name == "db");
  CHECK(*o.value().size_bytes == 10ull << 30);
  CHECK(*o.value().fs == "xfs");
  CHECK(volume_name("size=10G,fs=xfs,name=db").value() == "db");
  CHECK(volume_name("name=db,size=1G").value() == "db");
  CHECK(volume_name("db").value() == "db");

  auto labels = parse_create_options("name=db,label=app=pg,label=env=prod", {});
  REQUIRE(labels.has_value());
  CHECK(labels.value().labels == Labels{{"app", "pg"}, {"env", "prod"}});

  SUBCASE("with --opt too: the same value is fine, a different one is not") {
    CHECK(parse_create_options("name=db,size=1G", {{"size", "1G"}}).has_value());
    auto both = parse_create_options("name=db,size=1G", {{"fs", "xfs"}});
    REQUIRE(both.has_value());
    CHECK(*both.value().fs == "xfs");
    std::string e = error_of(parse_create_options("name=db,size=1G", {{"size", "2G"}}));
    CHECK(contains(e, "'1G' in the name but '2G' in --opt"));
  }
  SUBCASE("malformed inline forms") {
    CHECK(contains(error_of(parse_create_options("size=1G", {})), "no name=NAME"));
    CHECK(contains(error_of(parse_create_options("size=1G,,name=db", {})), "not key=value"));
    CHECK(contains(error_of(parse_create_options("size=1G,db", {})), "not key=value"));
    CHECK(contains(error_of(parse_create_options("=1G,name=db", {})), "not key=value"));
    CHECK(contains(error_of(parse_create_options("name=a,name=b", {})), "given twice"));
    CHECK(contains(error_of(parse_create_options("name=db,colour=red", {})),
                   "unknown option 'colour' in the name; valid options:"));
    CHECK(contains(error_of(parse_create_options("name=a/b,size=1G", {})), "'/'"));
    CHECK(contains(error_of(volume_name("size=1G")), "no name=NAME"));
  }
}

TEST_CASE("volume names: no '/', no '..', no control characters, nothing read as options") {
  CHECK(check_volume_name("db").is_ok());
  CHECK(check_volume_name("db.v2-data_1").is_ok());
  CHECK(check_volume_name(std::string(255, 'n')).is_ok());
  CHECK(contains(error_of(check_volume_name("")), "empty"));
  CHECK(contains(error_of(check_volume_name(std::string(256, 'n'))), "256 bytes"));
  CHECK(contains(error_of(check_volume_name("a/b")), "contains '/'"));
  CHECK(contains(error_of(check_volume_name("/abs")), "contains '/'"));
  CHECK(contains(error_of(check_volume_name("..")), "contains '..'"));
  CHECK(contains(error_of(check_volume_name("a..b")), "contains '..'"));
  CHECK(contains(error_of(check_volume_name("a\nb")), "control character"));
  CHECK(contains(error_of(check_volume_name("a,b")), "','"));
  CHECK(contains(error_of(volume_name("..")), "'..'"));
  CHECK(contains(error_of(volume_name("x/../../etc")), "'/'"));
}

TEST_CASE("reply bodies are the shapes Docker decodes") {
  CHECK(Json::parse(activate_body()) == Json{{"Implements", {"VolumeDriver"}}});
  auto caps = Json::parse(capabilities_body());
  CHECK(caps["Capabilities"]["Scope"] == "local");
  CHECK(Json::parse(empty_body()) == Json{{"Err", ""}});
  CHECK(Json::parse(error_body("volume 'x' does not exist"))["Err"] == "volume 'x' does not exist");
  // Invalid UTF-8 echoed from a request still gives valid JSON.
  CHECK(Json::parse(error_body("bad \xff name"))["Err"].is_string());
  auto m = Json::parse(mountpoint_body("/var/lib/pxd/mounts/db"));
  CHECK(m["Mountpoint"] == "/var/lib/pxd/mounts/db");
  CHECK(m["Err"] == "");

  VolumeEntry e{"size=1G,name=db", "/m/db", 1795000000, {{"fs", "ext4"}}};
  auto get = Json::parse(get_body(e));
  CHECK(get["Err"] == "");
  CHECK(get["Volume"]["Name"] == "size=1G,name=db");
  CHECK(get["Volume"]["Mountpoint"] == "/m/db");
  CHECK(get["Volume"]["CreatedAt"] == "2026-11-18T11:06:40Z");
  CHECK(get["Volume"]["Status"]["fs"] == "ext4");
  auto list = Json::parse(list_body({e, {"other", "", 0, {}}}));
  REQUIRE(list["Volumes"].size() == 2);
  CHECK(list["Volumes"][1]["Name"] == "other");
  CHECK(list["Volumes"][1]["Mountpoint"] == "");
  CHECK(Json::parse(list_body({}))["Volumes"].is_array());
  CHECK(rfc3339(0) == "1970-01-01T00:00:00Z");
}

// Random bytes, random JSON-ish text and truncations of real bodies: the parser answers
// with a value or an error, never crashes, and never accepts a truncated real body.
TEST_CASE("fuzz: random and truncated bodies") {
  uint64_t seed = std::random_device{}();
  if (const char* env = std::getenv("PXD_FUZZ_SEED")) seed = std::strtoull(env, nullptr, 10);
  MESSAGE("fuzz seed " << seed << " (set PXD_FUZZ_SEED to repeat)");
  std::mt19937_64 rng(seed);
  const Endpoint endpoints[] = {Endpoint::kActivate, Endpoint::kCreate,  Endpoint::kRemove,
                                Endpoint::kMount,    Endpoint::kUnmount, Endpoint::kPath,
                                Endpoint::kGet,      Endpoint::kList,    Endpoint::kCapabilities};
  const std::string real[] = {
      R"({"Name": "db", "Opts": {"size": "10G", "fs": "xfs", "label": "a=b"}})",
      R"({"Name": "size=1G,name=db", "ID": "b87d7442095999a92b65b3d9691e697b61713829cc0ffd"})",
      R"({"Name": "db"})",
  };
  const std::string alphabet = "{}[]\":,0123456789 ntrufalse\\NameIDOpts=/.\x01\xff";
  for (int i = 0; i < 20000; ++i) {
    Endpoint e = endpoints[rng() % std::size(endpoints)];
    std::string body;
    switch (rng() % 3) {
      case 0:
        body.resize(rng() % 200);
        for (auto& c : body) c = static_cast<char>(rng());
        break;
      case 1:
        body.resize(rng() % 200);
        for (auto& c : body) c = alphabet[rng() % alphabet.size()];
        break;
      default: {
        const std::string& r = real[rng() % std::size(real)];
        size_t cut = rng() % r.size();  // strictly shorter than the real body
        body = r.substr(0, cut);
        auto parsed = parse_request(e, body);
        bool blank = body.find_first_not_of(" ") == std::string::npos;
        bool nameless =
            e == Endpoint::kActivate || e == Endpoint::kList || e == Endpoint::kCapabilities;
        if (!(blank && nameless)) CHECK_MESSAGE(parsed.has_error(), "accepted: " << body);
        continue;
      }
    }
    auto parsed = parse_request(e, body);
    if (parsed.has_value() && e == Endpoint::kCreate)
      (void)parse_create_options(parsed.value().name, parsed.value().opts);
    if (parsed.has_error()) CHECK(!parsed.error().message().empty());
    // Names and options of any bytes.
    std::string name(rng() % 40, 'x');
    for (auto& c : name) c = alphabet[rng() % alphabet.size()];
    (void)volume_name(name);
    (void)parse_create_options(name, {{name, name}});
  }
}

}  // namespace
}  // namespace pxd::docker
