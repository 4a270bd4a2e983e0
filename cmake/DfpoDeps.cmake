# Dependencies are Debian packages; a missing one stops the configure step and
# names the package that provides it.
find_package(PkgConfig)
if(NOT PKG_CONFIG_FOUND)
  message(FATAL_ERROR "pkg-config not found: install the Debian package 'pkg-config' (or run ./ci/setup)")
endif()

# dfpo_require_pkg(PREFIX module debian-package)
# Defines the imported target PkgConfig::PREFIX or fails naming the package.
function(dfpo_require_pkg prefix module debpkg)
  pkg_check_modules(${prefix} QUIET IMPORTED_TARGET GLOBAL ${module})
  if(NOT ${prefix}_FOUND)
    message(FATAL_ERROR "${module} not found: install the Debian package '${debpkg}' (or run ./ci/setup)")
  endif()
endfunction()

dfpo_require_pkg(CJSON libcjson libcjson-dev)
dfpo_require_pkg(OPENBLAS openblas libopenblas-dev)
dfpo_require_pkg(PLPLOT plplot libplplot-dev)
dfpo_require_pkg(PCRE2 libpcre2-8 libpcre2-dev)
# the WordPiece tokenizer (BERT): NFD, Unicode categories, lower-casing
dfpo_require_pkg(ICU icu-uc libicu-dev)
# T5's tokenizer (spiece.model): the SentencePiece library, C++ (trainer/tok_spm.cc)
dfpo_require_pkg(SENTENCEPIECE sentencepiece libsentencepiece-dev)
# datasets/: downloads, archive extraction, SHA-256 (and SHA-1: the git blob ids of hub files)
dfpo_require_pkg(CURL libcurl libcurl4-openssl-dev)
dfpo_require_pkg(ARCHIVE libarchive libarchive-dev)
dfpo_require_pkg(CRYPTO libcrypto libssl-dev)
dfpo_require_pkg(GSL gsl libgsl-dev)
# gsl.pc also links GSL's reference CBLAS (libgslcblas), whose cblas_* would
# shadow OpenBLAS's in the whole binary; link libgsl alone and let OpenBLAS
# provide the CBLAS symbols libgsl refers to.
find_library(DFPO_GSL_LIBRARY gsl HINTS ${GSL_LIBRARY_DIRS} REQUIRED)
add_library(dfpo_gsl INTERFACE)
target_include_directories(dfpo_gsl INTERFACE ${GSL_INCLUDE_DIRS})
target_link_libraries(dfpo_gsl INTERFACE ${DFPO_GSL_LIBRARY} PkgConfig::OPENBLAS m)

find_package(OpenMP COMPONENTS C)
if(NOT OpenMP_C_FOUND)
  message(FATAL_ERROR "OpenMP for C not found: install the Debian package 'libgomp1' with gcc (or run ./ci/setup)")
endif()
