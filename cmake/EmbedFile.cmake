# cmake -DINPUT=file -DOUTPUT=file.c -DSYMBOL=name -P EmbedFile.cmake
# Writes a C file defining `const unsigned char SYMBOL[]` (the bytes of INPUT
# plus a terminating NUL) and `const size_t SYMBOL_len` (without the NUL).
file(READ "${INPUT}" _hex HEX)
string(LENGTH "${_hex}" _n)
math(EXPR _len "${_n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," _bytes "${_hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" _bytes "${_bytes}")
file(WRITE "${OUTPUT}.tmp"
  "/* Generated from ${INPUT} by cmake/EmbedFile.cmake; do not edit. */\n"
  "#include <stddef.h>\n"
  "const unsigned char ${SYMBOL}[] = {\n${_bytes}0x00};\n"
  "const size_t ${SYMBOL}_len = ${_len};\n")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
