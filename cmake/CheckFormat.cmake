# cmake -DCLANG_FORMAT=... -DSOURCE_DIR=... -P CheckFormat.cmake
# Fails listing every source file that clang-format would change. One
# clang-format process checks them all (one per file took 26-28 s of CI).
file(GLOB_RECURSE _srcs
  "${SOURCE_DIR}/common/*.[ch]" "${SOURCE_DIR}/datasets/*.[ch]" "${SOURCE_DIR}/trainer/*.[ch]"
  "${SOURCE_DIR}/trainer/*.cu" "${SOURCE_DIR}/metrics/*.[ch]" "${SOURCE_DIR}/reports/*.[ch]"
  "${SOURCE_DIR}/harness/*.[ch]" "${SOURCE_DIR}/tests/*.[ch]" "${SOURCE_DIR}/bench/*.[ch]")
list(LENGTH _srcs _n)
execute_process(COMMAND "${CLANG_FORMAT}" --dry-run --Werror ${_srcs}
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE _err)
if(NOT rc EQUAL 0)
  # each finding starts "<file>:<line>:<column>: error: ..."
  string(REGEX MATCHALL "(^|\n)[^\n:]+:[0-9]+:[0-9]+: error" _hits "${_err}")
  set(_bad "")
  foreach(h ${_hits})
    string(REGEX REPLACE "^\n?([^\n:]+):[0-9]+:[0-9]+: error$" "\\1" _f "${h}")
    list(APPEND _bad "${_f}")
  endforeach()
  list(REMOVE_DUPLICATES _bad)
  string(REPLACE ";" "\n  " _list "${_bad}")
  if(NOT _bad)
    set(_list "(clang-format exited ${rc}):\n${_err}")
  endif()
  message(FATAL_ERROR "not formatted as .clang-format says (run clang-format -i):\n  ${_list}")
endif()
message(STATUS "${_n} source files formatted")
