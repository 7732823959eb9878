#include "tests/fuzz/mutate.h"

#include <algorithm>
#include <cstdlib>

namespace sluice::fuzz {

namespace {

// Tokens that change a document's meaning far more than random bytes do.
const std::vector<std::string>& tokens() {
  static const std::vector<std::string> t = {"{",
                                             "}",
                                             "[",
                                             "]",
                                             ":",
                                             ",",
                                             "\"",
                                             "\\",
                                             "\n",
                                             "- ",
                                             "---\n",
                                             "...\n",
                                             "&a ",
                                             "*a",
                                             "!!str ",
                                             "!!binary ",
                                             "<<: ",
                                             "? ",
                                             "|\n",
                                             ">\n",
                                             "#",
                                             "\t",
                                             "\r",
                                             "\xff",
                                             "\xc3",
                                             "\xed\xa0\x80",
                                             "\u00e9",
                                             "null",
                                             "true",
                                             "1e999",
                                             "-0",
                                             "18446744073709551616",
                                             "-9223372036854775809",
                                             "0x7fffffff",
                                             "NaN",
                                             "\"\\u0000\"",
                                             "\"\\ud800\"",
                                             std::string(1, '\0'),
                                             "kind: List\nitems:\n",
                                             "apiVersion: v1\n"};
  return t;
}

}  // namespace

Mutator::Mutator(std::vector<std::string> seeds, uint64_t seed)
    : seeds_(std::move(seeds)), seed_(seed), rng_(seed) {
  if (seeds_.empty()) seeds_.push_back("");
}

std::string Mutator::next() {
  std::string s = seeds_[pick(seeds_.size())];
  size_t n = 1 + pick(4);
  for (size_t i = 0; i < n; ++i) s = mutateOnce(std::move(s));
  return s;
}

std::string Mutator::mutateOnce(std::string s) {
  switch (pick(10)) {
    case 0:  // flip bits of one byte
      if (!s.empty()) s[pick(s.size())] ^= static_cast<char>(1u << pick(8));
      break;
    case 1:  // random byte inserted
      s.insert(s.begin() + static_cast<ptrdiff_t>(pick(s.size() + 1)),
               static_cast<char>(pick(256)));
      break;
    case 2: {  // delete a range
      if (s.empty()) break;
      size_t at = pick(s.size());
      s.erase(at, 1 + pick(std::min<size_t>(64, s.size() - at)));
      break;
    }
    case 3:  // truncate
      s.resize(pick(s.size() + 1));
      break;
    case 4: {  // splice: our head, another seed's tail
      const std::string& o = seeds_[pick(seeds_.size())];
      s = s.substr(0, pick(s.size() + 1)) + o.substr(pick(o.size() + 1));
      break;
    }
    case 5: {  // a token inserted
      const std::string& t = tokens()[pick(tokens().size())];
      s.insert(pick(s.size() + 1), t);
      break;
    }
    case 6: {  // a token replaces a range
      if (s.empty()) break;
      size_t at = pick(s.size());
      s.replace(at, pick(std::min<size_t>(16, s.size() - at) + 1), tokens()[pick(tokens().size())]);
      break;
    }
    case 7: {  // duplicate a chunk (repeated keys, repeated documents)
      if (s.empty()) break;
      size_t at = pick(s.size());
      size_t len = 1 + pick(std::min<size_t>(256, s.size() - at));
      s.insert(at, s.substr(at, len));
      break;
    }
    case 8: {  // a hostile scalar replaces a number or a word
      auto hs = hostileScalars();
      size_t at = s.find_first_of("0123456789", pick(s.size() + 1));
      if (at == std::string::npos) at = pick(s.size() + 1);
      s.insert(at, hs[pick(hs.size())]);
      break;
    }
    default: {  // nesting spliced in
      size_t depth = 1 + pick(2000);
      std::string nest;
      switch (pick(4)) {
        case 0:
          nest = nestedJsonArrays(depth);
          break;
        case 1:
          nest = nestedJsonObjects(depth);
          break;
        case 2:
          nest = nestedYamlFlow(depth);
          break;
        default:
          nest = nestedYamlSequences(std::min<size_t>(depth, 200));
          break;
      }
      s.insert(pick(s.size() + 1), nest);
      break;
    }
  }
  // Keep inputs bounded: the decoders' own limits are not what this tests.
  if (s.size() > (1u << 20)) s.resize(1u << 20);
  return s;
}

std::string nestedJsonArrays(size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

std::string nestedJsonObjects(size_t depth) {
  std::string s;
  for (size_t i = 0; i < depth; ++i) s += "{\"a\":";
  s += "1";
  s += std::string(depth, '}');
  return s;
}

std::string nestedYamlSequences(size_t depth) {
  std::string s;
  for (size_t i = 0; i < depth; ++i) s += std::string(2 * i, ' ') + "-\n";
  return s + std::string(2 * depth, ' ') + "x\n";
}

std::string nestedYamlFlow(size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

std::vector<std::string> hostileScalars() {
  return {"18446744073709551616",
          "340282366920938463463374607431768211456",
          "-9223372036854775809",
          "1e308",
          "1e999",
          "-1e999",
          "0.000000000000000000000000000000000000000000001",
          "4294967296",
          "2147483648",
          "65536",
          "-1",
          std::string(10000, '9'),
          "\"" + std::string(70000, 'a') + "\"",
          "\"\xff\xfe\"",
          "\"\\ud800\""};
}

size_t runFor(Mutator& m, std::chrono::milliseconds budget, size_t maxIterations,
              const std::function<void(const std::string&, size_t)>& one) {
  auto end = std::chrono::steady_clock::now() + budget;
  size_t i = 0;
  for (; i < maxIterations && std::chrono::steady_clock::now() < end; ++i) one(m.next(), i);
  return i;
}

std::chrono::milliseconds budget(std::chrono::milliseconds dflt) {
  if (const char* s = std::getenv("SLUICE_FUZZ_SECONDS"); s && *s) {
    long v = std::strtol(s, nullptr, 10);
    if (v > 0) return std::chrono::seconds(v);
  }
  return dflt;
}

std::string preview(const std::string& input) {
  std::string out;
  for (unsigned char c : input.substr(0, 200)) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (input.size() > 200) out += "...(" + std::to_string(input.size()) + " bytes)";
  return out;
}

}  // namespace sluice::fuzz
