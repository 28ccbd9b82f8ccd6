# Checks that the installed FlashRNN package works for a downstream project:
#   cmake --install <build> --prefix <work>/prefix
#   cmake -S examples/embed -B <work>/build -DCMAKE_PREFIX_PATH=<work>/prefix
#   cmake --build <work>/build && <work>/build/embed
# Run by ctest (label "install") as
#   cmake -DFLASHRNN_BUILD_DIR=... -DEMBED_SOURCE_DIR=... -DWORK_DIR=...
#         [-DGENERATOR=...] [-DCXX_COMPILER=...] -P check_installed_package.cmake
cmake_minimum_required(VERSION 3.20)
foreach(var FLASHRNN_BUILD_DIR EMBED_SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_installed_package.cmake: pass -D${var}=...")
  endif()
endforeach()

function(run_step what)
  message(STATUS "[install check] ${what}: ${ARGN}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "[install check] ${what} failed (${rc}):\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

set(prefix ${WORK_DIR}/prefix)
set(build ${WORK_DIR}/build)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

run_step("install" ${CMAKE_COMMAND} --install ${FLASHRNN_BUILD_DIR} --prefix ${prefix})

set(configure_args -S ${EMBED_SOURCE_DIR} -B ${build} -DCMAKE_BUILD_TYPE=Release
    -DCMAKE_PREFIX_PATH=${prefix})
if(GENERATOR)
  list(APPEND configure_args -G ${GENERATOR})
endif()
if(CXX_COMPILER)
  list(APPEND configure_args -DCMAKE_CXX_COMPILER=${CXX_COMPILER})
endif()
run_step("configure" ${CMAKE_COMMAND} ${configure_args})
run_step("build" ${CMAKE_COMMAND} --build ${build})

# The program must come from the installed headers, not the source tree.
file(READ ${build}/CMakeCache.txt cache)
string(REGEX MATCH "flashrnn_DIR:PATH=[^\n]*" found_dir "${cache}")
message(STATUS "[install check] ${found_dir}")
string(FIND "${found_dir}" "${prefix}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "[install check] find_package(flashrnn) did not resolve to ${prefix}: ${found_dir}")
endif()

run_step("run" ${build}/embed)
message(STATUS "[install check] program output:\n${last_output}")
if(NOT last_output MATCHES "embed: OK")
  message(FATAL_ERROR "[install check] the program did not print 'embed: OK'")
endif()
message(STATUS "[install check] passed")
