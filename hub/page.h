/* page - the status page that civibusd serves at /.
 *
 * The page is hub/www/status.html, one self-contained HTML file (inline CSS
 * and script, no external asset) that fetches /api/status every 2 s. The
 * build turns it into C source with hub/www/embed.sh, so that the binary
 * carries it and needs no file at run time; main hands it to http_set_page.
 * Edit the HTML, never the generated code. docs/MONITORING.md describes what
 * the page shows.
 */
#ifndef CIVIBUS_PAGE_H
#define CIVIBUS_PAGE_H

#include <stddef.h>

/* The page's bytes, followed by a NUL that page_status_html_len leaves out;
 * static for the life of the process. */
extern const char page_status_html[];
extern const size_t page_status_html_len;

#endif
