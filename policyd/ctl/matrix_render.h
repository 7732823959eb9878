// The one convention for every reachability matrix Sluice prints: `sluicectl matrix` and
// `sluicectl diff` (text and SVG) and the demo's predicted-vs-measured matrices. A cell is a
// Mark; text shows its character, SVG its colour, and both print the legend of what they show.
//
//   +  allowed                 X  denied
//   a  allowed now, denied once the audited policies are enforced (audit-deny)
//   o  denied now, allowed once the audited policies are enforced
//   -  not probed (demo: a pod to itself)
//   !  measured differs from the prediction (demo)
//   >  denied before, allowed after (diff)   <  allowed before, denied after (diff)
//
// Pure formatting over marks and "ns/pod" labels: no model or engine types.
#pragma once

#include <cstddef>
#include <ostream>
#include <string>
#include <vector>

namespace sluice::ctl {

enum class Mark : char {
  Allowed = '+',
  Denied = 'X',
  AuditDeny = 'a',
  AuditAllow = 'o',
  NotProbed = '-',
  Mismatch = '!',
  NowAllowed = '>',
  NowDenied = '<',
};

inline char markChar(Mark m) { return static_cast<char>(m); }
// "allowed", "denied", "allowed now, denied once enforced (audit)", ...
const char* markMeaning(Mark m);
// "allowed", "denied", "audit-deny", ...: the class of the mark's cells in the SVG.
const char* markId(Mark m);

// A square matrix of marks: rows are sources, columns destinations, both in `labels` order
// ("ns/pod", grouped by namespace).
struct MarkGrid {
  std::vector<std::string> labels;
  std::vector<Mark> cells;  // row-major, labels.size()^2

  size_t size() const { return labels.size(); }
  Mark at(size_t i, size_t j) const { return cells[i * labels.size() + j]; }
};

// "Pods:" then one "  index  label" line per pod.
void renderPodIndex(std::ostream& out, const std::vector<std::string>& labels);
// A header of column indices, then one line per source: its index and one mark per column.
// Every line of one grid has the same width.
void renderGridText(std::ostream& out, const MarkGrid& g);
// "Legend: + allowed, X denied" and the meaning of every other mark the grid holds.
std::string legendLine(const MarkGrid& g);

struct SvgOptions {
  std::string title;
  std::string subtitle;
  // Diff pictures: unchanged allowed/denied cells are drawn pale so the changes stand out.
  bool fadeUnchanged = false;
};

// An SVG picture of the grid, grouped by namespace: namespace bands and names on both axes, a
// gap between namespace blocks, pod names when cells are large enough to read them, and a
// legend. Cell size shrinks with the pod count (down to 2 px at about 600 pods and more), so
// 1,000 pods still fit a screen. Runs of equal cells are one path segment each.
void renderSvg(std::ostream& out, const MarkGrid& g, const SvgOptions& options);

// The colour of a mark in renderSvg ("#rrggbb"), for tests and documentation.
const char* markColor(Mark m, bool faded = false);

// Where renderSvg puts things, so tests can find a cell's pixels.
struct SvgLayout {
  int cell = 0;      // cell side, px
  int gap = 0;       // between namespace blocks, px
  int nsWidth = 0;   // namespace names, px (both axes)
  int podWidth = 0;  // pod names, px (0 without pod labels)
  int left = 0;      // x of the first column
  int top = 0;       // y of the first row
  int width = 0;     // the picture
  int height = 0;
  int font = 12;  // title and legend text, grows with the picture
  int title = 0;  // height of the title area
  bool podLabels = false;
  std::vector<int> group;  // namespace block of each pod, in order
  int cellX(size_t j) const { return left + static_cast<int>(j) * cell + group[j] * gap; }
  int cellY(size_t i) const { return top + static_cast<int>(i) * cell + group[i] * gap; }
};
SvgLayout svgLayout(const MarkGrid& g);

}  // namespace sluice::ctl
