# Compiler options shared by every Bulkhead target, and the helpers that declare components,
# unit-test binaries and integration-test binaries.

add_library(bulkhead_options INTERFACE)
target_compile_options(bulkhead_options INTERFACE -Wall -Wextra -Wpedantic -Wshadow
                       -Wnon-virtual-dtor -Wold-style-cast -Wcast-align -Wunused
                       -Woverloaded-virtual)
if(BULKHEAD_WERROR)
  target_compile_options(bulkhead_options INTERFACE -Werror)
endif()
target_include_directories(bulkhead_options INTERFACE ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR}/generated)

if(BULKHEAD_SANITIZE STREQUAL "address")
  set(_san -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
elseif(BULKHEAD_SANITIZE STREQUAL "thread")
  set(_san -fsanitize=thread)
elseif(NOT BULKHEAD_SANITIZE STREQUAL "")
  message(FATAL_ERROR "BULKHEAD_SANITIZE must be '', 'address' or 'thread'")
endif()
if(_san)
  target_compile_options(bulkhead_options INTERFACE ${_san})
  target_link_options(bulkhead_options INTERFACE ${_san})
endif()

# bulkhead_component(NAME SOURCES ... DEPS ...): the library target bulkhead_<NAME>.
function(bulkhead_component name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(bulkhead_${name} STATIC ${ARG_SOURCES})
  target_link_libraries(bulkhead_${name} PUBLIC bulkhead_options ${ARG_DEPS}
                        PRIVATE ${ARG_PRIVATE_DEPS})
endfunction()

# bulkhead_test(NAME LABEL unit|integration SOURCES ... DEPS ...): one doctest binary, one CTest.
function(bulkhead_test name)
  cmake_parse_arguments(ARG "" "LABEL;TIMEOUT" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE bulkhead_options doctest::doctest ${ARG_DEPS})
  add_test(NAME ${name} COMMAND ${name})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 600)
  endif()
  set_tests_properties(${name} PROPERTIES LABELS ${ARG_LABEL} TIMEOUT ${ARG_TIMEOUT})
endfunction()
