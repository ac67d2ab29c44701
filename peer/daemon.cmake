add_library(starling_peer daemon.cc)
target_link_libraries(starling_peer
  PUBLIC starling_common
  PRIVATE starling_engine starling_local_api starling_mesh starling_crypto
          nlohmann_json::nlohmann_json Threads::Threads starling_warnings)
