#include "policyd/ctl/matrix_render.h"

#include <algorithm>
#include <array>
#include <map>
#include <string_view>

namespace sluice::ctl {

namespace {

constexpr std::array<Mark, 8> kMarks = {Mark::Allowed,    Mark::Denied,    Mark::AuditDeny,
                                        Mark::AuditAllow, Mark::NotProbed, Mark::Mismatch,
                                        Mark::NowAllowed, Mark::NowDenied};

std::string pad(const std::string& s, size_t w) {
  return std::string(w > s.size() ? w - s.size() : 0, ' ') + s;
}

std::string_view namespaceOf(const std::string& label) {
  auto slash = label.find('/');
  return slash == std::string::npos ? std::string_view() : std::string_view(label).substr(0, slash);
}

std::string_view nameOf(const std::string& label) {
  auto slash = label.find('/');
  return slash == std::string::npos ? std::string_view(label)
                                    : std::string_view(label).substr(slash + 1);
}

std::string xmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// Long names are cut so that one pod cannot push the matrix off the picture.
std::string clip(std::string_view s, size_t max) {
  if (s.size() <= max) return std::string(s);
  return std::string(s.substr(0, max - 1)) + "\u2026";
}

constexpr size_t kNsChars = 28;
constexpr size_t kPodChars = 36;
constexpr int kBand = 6;
constexpr int kMargin = 10;
constexpr int kLegendRow = 20;

std::vector<Mark> marksUsed(const MarkGrid& g) {
  std::array<bool, 256> seen{};
  seen[static_cast<unsigned char>(Mark::Allowed)] = true;
  seen[static_cast<unsigned char>(Mark::Denied)] = true;
  for (Mark m : g.cells) seen[static_cast<unsigned char>(m)] = true;
  std::vector<Mark> out;
  for (Mark m : kMarks) {
    if (seen[static_cast<unsigned char>(m)]) out.push_back(m);
  }
  return out;
}

}  // namespace

const char* markMeaning(Mark m) {
  switch (m) {
    case Mark::Allowed:
      return "allowed";
    case Mark::Denied:
      return "denied";
    case Mark::AuditDeny:
      return "allowed now, denied once enforced (audit)";
    case Mark::AuditAllow:
      return "denied now, allowed once enforced (audit)";
    case Mark::NotProbed:
      return "not probed";
    case Mark::Mismatch:
      return "measured differs from predicted";
    case Mark::NowAllowed:
      return "denied before, allowed after";
    case Mark::NowDenied:
      return "allowed before, denied after";
  }
  return "?";
}

const char* markId(Mark m) {
  switch (m) {
    case Mark::Allowed:
      return "allowed";
    case Mark::Denied:
      return "denied";
    case Mark::AuditDeny:
      return "audit-deny";
    case Mark::AuditAllow:
      return "audit-allow";
    case Mark::NotProbed:
      return "not-probed";
    case Mark::Mismatch:
      return "mismatch";
    case Mark::NowAllowed:
      return "now-allowed";
    case Mark::NowDenied:
      return "now-denied";
  }
  return "?";
}

const char* markColor(Mark m, bool faded) {
  switch (m) {
    case Mark::Allowed:
      return faded ? "#bfe5cb" : "#2ca25f";
    case Mark::Denied:
      return faded ? "#f0f0f0" : "#d4d4d4";
    case Mark::AuditDeny:
      return "#f28e2b";
    case Mark::AuditAllow:
      return "#7b4fb0";
    case Mark::NotProbed:
      return "#9e9e9e";
    case Mark::Mismatch:
      return "#e31a1c";
    case Mark::NowAllowed:
      return "#1f6fd1";
    case Mark::NowDenied:
      return "#e31a1c";
  }
  return "#000000";
}

void renderPodIndex(std::ostream& out, const std::vector<std::string>& labels) {
  const size_t width = labels.empty() ? 1 : std::to_string(labels.size() - 1).size();
  out << "Pods:\n";
  for (size_t i = 0; i < labels.size(); ++i)
    out << "  " << pad(std::to_string(i), width) << "  " << labels[i] << "\n";
}

void renderGridText(std::ostream& out, const MarkGrid& g) {
  const size_t n = g.size();
  if (n == 0) return;
  const size_t width = std::to_string(n - 1).size();
  std::string line = std::string(width + 2, ' ');
  for (size_t j = 0; j < n; ++j) line += pad(std::to_string(j), width) + " ";
  line.pop_back();
  out << line << "\n";
  for (size_t i = 0; i < n; ++i) {
    line = pad(std::to_string(i), width) + "  ";
    for (size_t j = 0; j < n; ++j) line += pad(std::string(1, markChar(g.at(i, j))), width) + " ";
    line.pop_back();
    out << line << "\n";
  }
}

std::string legendLine(const MarkGrid& g) {
  std::string s = "Legend:";
  for (Mark m : marksUsed(g)) {
    s += std::string(s.size() == 7 ? " " : "  ") + markChar(m) + " " + markMeaning(m);
  }
  return s;
}

SvgLayout svgLayout(const MarkGrid& g) {
  SvgLayout l;
  const size_t n = g.size();
  l.group.reserve(n);
  int group = 0;
  size_t nsChars = 4, podChars = 4;
  for (size_t i = 0; i < n; ++i) {
    if (i > 0 && namespaceOf(g.labels[i]) != namespaceOf(g.labels[i - 1])) ++group;
    l.group.push_back(group);
    nsChars = std::max(nsChars, std::min(kNsChars, namespaceOf(g.labels[i]).size()));
    podChars = std::max(podChars, std::min(kPodChars, nameOf(g.labels[i]).size()));
  }
  // About 1,400 px of matrix whatever the pod count, within 2..18 px per cell.
  l.cell = std::clamp(1400 / static_cast<int>(std::max<size_t>(n, 1)), 2, 18);
  l.gap = l.cell >= 8 ? 3 : 2;
  l.podLabels = l.cell >= 10;
  l.nsWidth = static_cast<int>(nsChars) * 7 + 10;
  l.podWidth = l.podLabels ? static_cast<int>(podChars) * 6 + 8 : 0;
  l.left = kMargin + l.nsWidth + l.podWidth + kBand + 4;
  const int side = static_cast<int>(n) * l.cell + group * l.gap;
  l.width = std::max(l.left + side + kMargin, 640);
  // The title and legend stay legible when a large picture is scaled down to a screen.
  l.font = std::clamp(l.width / 110, 12, 24);
  l.title = 2 * l.font + 32;
  l.top = l.title + l.nsWidth + l.podWidth + kBand + 4;
  l.height = l.top + side + kMargin + 12 +
             static_cast<int>(marksUsed(g).size()) * (l.font + kLegendRow - 12);
  return l;
}

void renderSvg(std::ostream& out, const MarkGrid& g, const SvgOptions& options) {
  const SvgLayout l = svgLayout(g);
  const size_t n = g.size();
  std::string s;
  s.reserve(4096 + n * 64);
  auto num = [](int v) { return std::to_string(v); };
  auto text = [&](int x, int y, const std::string& body, const std::string& attrs) {
    s += "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\" " + attrs + ">" + body + "</text>\n";
  };
  // Rotated so that it reads bottom to top, starting at (x, y).
  auto upText = [&](int x, int y, const std::string& body, const std::string& attrs) {
    s += "<text transform=\"translate(" + num(x) + "," + num(y) + ") rotate(-90)\" " + attrs + ">" +
         body + "</text>\n";
  };
  auto rect = [&](int x, int y, int w, int h, const char* fill) {
    s += "<rect x=\"" + num(x) + "\" y=\"" + num(y) + "\" width=\"" + num(w) + "\" height=\"" +
         num(h) + "\" fill=\"" + fill + "\"/>\n";
  };
  s += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  s += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(l.width) + "\" height=\"" +
       num(l.height) + "\" viewBox=\"0 0 " + num(l.width) + " " + num(l.height) +
       "\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n";
  rect(0, 0, l.width, l.height, "#ffffff");
  const std::string fs = num(l.font);
  text(kMargin, l.font + 12, xmlEscape(options.title),
       "font-size=\"" + num(l.font + 3) + "\" font-weight=\"bold\"");
  text(kMargin, 2 * l.font + 22, xmlEscape(options.subtitle),
       "font-size=\"" + fs + "\" fill=\"#444444\"");

  // Namespace blocks: a band on each axis, and the name where the block is tall enough.
  const std::string nsAttrs = "font-size=\"11\" font-weight=\"bold\" fill=\"#1d3d66\"";
  for (size_t first = 0; first < n;) {
    size_t last = first;
    while (last + 1 < n && l.group[last + 1] == l.group[first]) ++last;
    const int extent = static_cast<int>(last - first + 1) * l.cell;
    const char* fill = l.group[first] % 2 ? "#9db7d8" : "#3f6fa8";
    rect(l.left - kBand - 2, l.cellY(first), kBand, extent, fill);
    rect(l.cellX(first), l.top - kBand - 2, extent, kBand, fill);
    if (extent >= 10) {
      const std::string name = xmlEscape(clip(namespaceOf(g.labels[first]), kNsChars));
      const int mid = extent / 2 + 4;
      text(kMargin, l.cellY(first) + mid, name, nsAttrs);
      upText(l.cellX(first) + mid, l.top - kBand - 6 - l.podWidth, name, nsAttrs);
    }
    first = last + 1;
  }
  if (l.podLabels) {
    const std::string attrs =
        "font-size=\"" + num(std::min(11, l.cell - 1)) + "\" fill=\"#333333\"";
    for (size_t i = 0; i < n; ++i) {
      const std::string name = xmlEscape(clip(nameOf(g.labels[i]), kPodChars));
      const int mid = l.cell / 2 + l.cell / 3;
      text(l.left - kBand - 6, l.cellY(i) + mid, name, attrs + " text-anchor=\"end\"");
      upText(l.cellX(i) + mid, l.top - kBand - 6, name, attrs);
    }
  }

  // Cells: per mark one path, one rectangle per run of equal cells within a namespace block.
  std::map<Mark, std::string> paths;
  for (size_t i = 0; i < n; ++i) {
    const std::string y = num(l.cellY(i));
    for (size_t j = 0; j < n;) {
      const Mark m = g.at(i, j);
      size_t k = j + 1;
      while (k < n && g.at(i, k) == m && l.group[k] == l.group[j]) ++k;
      const int w = static_cast<int>(k - j) * l.cell;
      paths[m] +=
          "M" + num(l.cellX(j)) + " " + y + "h" + num(w) + "v" + num(l.cell) + "h-" + num(w) + "z";
      j = k;
    }
  }
  s += "<g shape-rendering=\"crispEdges\">\n";
  for (const auto& [m, d] : paths) {
    s += "<path class=\"" + std::string(markId(m)) + "\" fill=\"" +
         markColor(m, options.fadeUnchanged) + "\" d=\"" + d + "\"/>\n";
  }
  s += "</g>\n";

  // Legend: every mark the picture uses.
  int y = (n == 0 ? l.top : l.cellY(n - 1) + l.cell) + kMargin + 4;
  for (Mark m : marksUsed(g)) {
    rect(kMargin, y, l.font + 2, l.font + 2, markColor(m, options.fadeUnchanged));
    std::string meaning = markMeaning(m);
    if (options.fadeUnchanged && (m == Mark::Allowed || m == Mark::Denied)) {
      meaning += " (unchanged)";
    }
    text(kMargin + l.font + 8, y + l.font, xmlEscape(meaning), "font-size=\"" + fs + "\"");
    y += l.font + kLegendRow - 12;
  }
  s += "</svg>\n";
  out << s;
}

}  // namespace sluice::ctl
