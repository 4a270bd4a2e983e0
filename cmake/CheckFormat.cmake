# cmake -DCLANG_FORMAT=... -DSOURCE_DIR=... -P CheckFormat.cmake
# Fails listing every source file that clang-format would change.
file(GLOB_RECURSE _srcs
  "${SOURCE_DIR}/common/*.[ch]" "${SOURCE_DIR}/datasets/*.[ch]" "${SOURCE_DIR}/trainer/*.[ch]"
  "${SOURCE_DIR}/trainer/*.cu" "${SOURCE_DIR}/metrics/*.[ch]" "${SOURCE_DIR}/reports/*.[ch]"
  "${SOURCE_DIR}/harness/*.[ch]" "${SOURCE_DIR}/tests/*.[ch]" "${SOURCE_DIR}/bench/*.[ch]")
set(_bad "")
foreach(f ${_srcs})
  execute_process(COMMAND "${CLANG_FORMAT}" --dry-run --Werror "${f}"
                  RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
  if(NOT rc EQUAL 0)
    list(APPEND _bad "${f}")
  endif()
endforeach()
list(LENGTH _srcs _n)
if(_bad)
  string(REPLACE ";" "\n  " _list "${_bad}")
  message(FATAL_ERROR "not formatted as .clang-format says (run clang-format -i):\n  ${_list}")
endif()
message(STATUS "${_n} source files formatted")
