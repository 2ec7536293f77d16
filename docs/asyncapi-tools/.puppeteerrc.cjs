// The HTML template depends on Puppeteer for its optional PDF output, which this project does not
// use: no browser is downloaded when the tools are installed.
module.exports = { skipDownload: true };
