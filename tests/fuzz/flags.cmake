# Compiler flags of a fuzzing build (-DTOKEND_FUZZ=ON, clang only). The
# top-level CMakeLists.txt includes this before it adds common/ and daemon/,
# so that tokend-common and tokend-core, which the harnesses link, carry the
# same instrumentation: libFuzzer's coverage and comparison tracing
# (fuzzer-no-link), AddressSanitizer and UndefinedBehaviorSanitizer, every
# undefined behaviour fatal. Every other target of such a build tree gets
# them too: build only the `fuzzers` target there (scripts/fuzz.sh does).
if(CMAKE_C_COMPILER_ID STREQUAL "Clang")
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined
                      -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g)
  add_link_options(-fsanitize=address,undefined)
else()
  message(WARNING "TOKEND_FUZZ needs clang (CC=clang); ${CMAKE_C_COMPILER_ID} builds no fuzzers")
endif()
