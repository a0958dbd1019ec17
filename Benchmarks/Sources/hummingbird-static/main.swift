// hummingbird-static PORT ROOT: the Hummingbird peer of the http scenario,
// its FileMiddleware serving ROOT on 127.0.0.1:PORT.

import Hummingbird
import Logging

let arguments = CommandLine.arguments
let port = arguments.count > 1 ? Int(arguments[1]) ?? 8080 : 8080
let root = arguments.count > 2 ? arguments[2] : "."
var logger = Logger(label: "hummingbird-static")
logger.logLevel = .error
let router = Router()
router.middlewares.add(FileMiddleware(root, searchForIndexHtml: false, logger: logger))
let app = Application(
    router: router,
    configuration: .init(address: .hostname("127.0.0.1", port: port)),
    logger: logger
)
try await app.runService()
