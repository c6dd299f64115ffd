import { LabIcon } from '@jupyterlab/ui-components';

// three domains joined: the federation
const federationSvg = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16">
  <g class="jp-icon3" fill="#616161">
    <circle cx="12" cy="5" r="3"/><circle cx="5" cy="18" r="3"/><circle cx="19" cy="18" r="3"/>
    <path d="M11 7.5 6.2 15.6l1.7 1 4.8-8.1zM13 7.5l-1.7 1 4.8 8.1 1.7-1zM8 17h8v2H8z"/>
  </g></svg>`;

// a shield with a check: the owner's review
const reviewSvg = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16">
  <g class="jp-icon3" fill="#616161">
    <path d="M12 1 3 5v6c0 5.6 3.8 10.7 9 12 5.2-1.3 9-6.4 9-12V5zm-1.5 15.5L6 12l1.4-1.4 3.1 3.1 6.1-6.1L18 9z"/>
  </g></svg>`;

export const federationIcon = new LabIcon({
  name: 'fednb:federation',
  svgstr: federationSvg
});
export const reviewIcon = new LabIcon({
  name: 'fednb:review',
  svgstr: reviewSvg
});
