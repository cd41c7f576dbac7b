// Decodes a URL's percent-encoded query or path text ("+" is a space), as the fake apiservers of the unit tests read
// the requests the client sends.
#pragma once

#include <string>

namespace singleton::testing {

inline std::string percentDecode(const std::string& text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size()) {
      out += static_cast<char>(std::stoi(text.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += text[i] == '+' ? ' ' : text[i];
    }
  }
  return out;
}

}  // namespace singleton::testing
