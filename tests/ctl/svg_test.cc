// `sluicectl matrix -o svg` and `diff -o svg`: the SVG is well-formed XML (xmllint), renders
// with rsvg-convert, and the rendered PNG shows each cell in its mark's colour, at 6 pods and at
// 1,000.
#include <gtest/gtest.h>
#include <png.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "policyd/ctl/diff.h"
#include "policyd/ctl/matrix.h"
#include "policyd/model/decode.h"
#include "subprocess.h"

namespace sluice::ctl {
namespace {

namespace fs = std::filesystem;

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb&) const = default;
};

std::ostream& operator<<(std::ostream& o, const Rgb& c) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", c.r, c.g, c.b);
  return o << buf;
}

Rgb parseColor(const char* hex) {
  unsigned v = std::stoul(std::string(hex + 1), nullptr, 16);
  return {static_cast<uint8_t>(v >> 16), static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)};
}

struct Png {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;
  Rgb at(int x, int y) const {
    const size_t o =
        (static_cast<size_t>(y) * static_cast<size_t>(width) + static_cast<size_t>(x)) * 3;
    return {rgb[o], rgb[o + 1], rgb[o + 2]};
  }
};

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "sluice-svg-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp " << tmpl;
    path_ = tmpl;
  }
  ~TempDir() { fs::remove_all(path_); }
  fs::path operator/(const std::string& name) const { return fs::path(path_) / name; }

 private:
  std::string path_;
};

// Writes the SVG, checks it with xmllint, renders it with rsvg-convert and reads the PNG back.
Png render(const std::string& svg, const TempDir& dir) {
  Png out;
  const auto svgPath = dir / "m.svg", pngPath = dir / "m.png";
  std::ofstream(svgPath) << svg;
  auto lint = testing::runProcess("/usr/bin/xmllint", {"--noout", svgPath.string()});
  EXPECT_EQ(lint.exitCode, 0) << "xmllint: " << lint.err;
  // Debian package librsvg2-bin (scripts/install-deps.sh).
  auto conv = testing::runProcess("/usr/bin/rsvg-convert",
                                  {"-f", "png", "-o", pngPath.string(), svgPath.string()});
  EXPECT_EQ(conv.exitCode, 0) << "rsvg-convert: " << conv.err;
  if (conv.exitCode != 0) return out;
  png_image img{};
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&img, pngPath.c_str())) {
    ADD_FAILURE() << "libpng: " << img.message;
    return out;
  }
  img.format = PNG_FORMAT_RGB;
  out.rgb.resize(PNG_IMAGE_SIZE(img));
  if (!png_image_finish_read(&img, nullptr, out.rgb.data(), 0, nullptr)) {
    ADD_FAILURE() << "libpng: " << img.message;
    return out;
  }
  out.width = static_cast<int>(img.width);
  out.height = static_cast<int>(img.height);
  return out;
}

// Every sampled cell's centre pixel has its mark's colour, and the gaps between namespace
// blocks are background.
void expectCells(const Png& png, const MarkGrid& g, bool faded, size_t maxSamples) {
  const SvgLayout l = svgLayout(g);
  ASSERT_EQ(png.width, l.width);
  ASSERT_EQ(png.height, l.height);
  const size_t n = g.size();
  std::mt19937 rng(42);
  const size_t samples = std::min(maxSamples, n * n);
  for (size_t s = 0; s < samples; ++s) {
    const size_t k = samples == n * n ? s : rng() % (n * n);
    const size_t i = k / n, j = k % n;
    const int x = l.cellX(j) + l.cell / 2, y = l.cellY(i) + l.cell / 2;
    ASSERT_EQ(png.at(x, y), parseColor(markColor(g.at(i, j), faded)))
        << g.labels[i] << " -> " << g.labels[j] << " (" << markChar(g.at(i, j)) << ") at " << x
        << "," << y;
  }
  for (size_t j = 1; j < n; ++j) {
    if (l.group[j] == l.group[j - 1]) continue;
    // The gap column just left of a new namespace block.
    ASSERT_EQ(png.at(l.cellX(j) - 1, l.cellY(0) + l.cell / 2), (Rgb{255, 255, 255}));
  }
}

std::string examples() { return std::string(SLUICE_SOURCE_DIR) + "/manifests/examples"; }

TEST(SvgTest, MatrixRendersEveryCellInItsColourWithAuditCells) {
  auto d = model::loadPaths({examples(), testing::fixture("audit")});
  ASSERT_TRUE(d.errors.empty());
  engine::Evaluator ev(d.cluster);
  Matrix m = computeMatrix(ev, PortQuery{});
  std::ostringstream os;
  renderMatrixSvg(os, m);
  const std::string svg = os.str();
  // A legend entry for each kind of cell the picture holds; namespace and pod names.
  for (const char* text : {"allowed now, denied once enforced (audit)", ">denied<", ">allowed<",
                           ">kube-system<", ">coredns<", "Reachability for TCP/80"}) {
    EXPECT_NE(svg.find(text), std::string::npos) << text;
  }
  TempDir dir;
  const Png png = render(svg, dir);
  ASSERT_GT(png.width, 0);
  const MarkGrid g = m.grid();
  bool audit = false;
  for (Mark c : g.cells) audit |= c == Mark::AuditDeny;
  ASSERT_TRUE(audit);
  expectCells(png, g, false, g.cells.size());
  EXPECT_TRUE(svgLayout(g).podLabels);
}

TEST(SvgTest, DiffHighlightsChangedCells) {
  auto before = model::loadPaths({examples()});
  auto after =
      model::loadPaths({examples() + "/01-cluster.yaml", examples() + "/03-app-policies.yaml"});
  ASSERT_TRUE(before.errors.empty());
  ASSERT_TRUE(after.errors.empty());
  engine::Evaluator a(before.cluster), b(after.cluster);
  auto d = diffMatrices(computeMatrix(a, PortQuery{}), computeMatrix(b, PortQuery{}));
  ASSERT_FALSE(d.changes.empty());
  size_t changed = 0;
  for (Mark c : d.grid.cells) changed += c == Mark::NowAllowed || c == Mark::NowDenied;
  EXPECT_EQ(changed, d.changes.size());
  std::ostringstream os;
  renderDiffSvg(os, d);
  EXPECT_NE(os.str().find("denied before, allowed after"), std::string::npos);
  EXPECT_NE(os.str().find("allowed (unchanged)"), std::string::npos);
  TempDir dir;
  const Png png = render(os.str(), dir);
  ASSERT_GT(png.width, 0);
  expectCells(png, d.grid, true, d.grid.cells.size());
}

// 1,000 pods in 25 namespaces: cells of a few pixels, namespace labels only, still exact.
TEST(SvgTest, ThousandPodsStayReadableAndExact) {
  model::Cluster c;
  std::mt19937 rng(7);
  for (int n = 0; n < 25; ++n) {
    model::Namespace ns;
    ns.name = "team-" + std::to_string(n);
    ns.labels = {{"kubernetes.io/metadata.name", ns.name}, {"tier", n % 3 ? "app" : "data"}};
    c.namespaces.push_back(ns);
    model::NetworkPolicy pol;
    pol.namespace_ = ns.name;
    pol.name = "only-app-tier";
    pol.affectsIngress = true;
    model::Peer peer;
    peer.namespaceSelector = model::LabelSelector{{{"tier", "app"}}, {}};
    pol.ingress.push_back(model::Rule{{peer}, {}});
    if (n % 4 == 0) pol.enforcement = model::Enforcement::Audit;
    if (n % 5 != 1) c.policies.push_back(pol);
  }
  for (int p = 0; p < 1000; ++p) {
    model::Pod pod;
    pod.namespace_ = "team-" + std::to_string(p % 25);
    pod.name = "pod-" + std::to_string(p);
    pod.ips = {IpAddr::v4(0x0a000000u + static_cast<uint32_t>(p) + 1)};
    c.pods.push_back(pod);
  }
  engine::Evaluator ev(c);
  Matrix m = computeMatrix(ev, PortQuery{});
  ASSERT_EQ(m.size(), 1000u);
  std::ostringstream os;
  renderMatrixSvg(os, m);
  const std::string svg = os.str();
  const MarkGrid g = m.grid();
  const SvgLayout l = svgLayout(g);
  EXPECT_FALSE(l.podLabels);
  EXPECT_LE(l.cell, 3);
  EXPECT_LE(l.width, 2400);
  // Runs of equal cells are merged: far below one element per cell.
  EXPECT_LT(svg.size(), 2u << 20) << svg.size() << " bytes";
  EXPECT_EQ(svg.find(">pod-1<"), std::string::npos);
  EXPECT_NE(svg.find(">team-24<"), std::string::npos);
  TempDir dir;
  const Png png = render(svg, dir);
  ASSERT_GT(png.width, 0);
  expectCells(png, g, false, 20000);
}

}  // namespace
}  // namespace sluice::ctl
